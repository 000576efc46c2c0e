"""Files to send (issue 35, in part): POST /v1/attachments takes one file as a multipart
upload, bounded before it is read; a single send names uploads in `attachment_ids`; an upload
is another company's to nobody, and is deleted a day after it was made."""

from __future__ import annotations

import hashlib
import os
import uuid
from datetime import timedelta

import pytest
from sqlmodel import Session, func, select

from core import attachments as files_at_rest
from core.attachments import purge
from core.models import Upload, utcnow
from core.security import secret_box
from tests.helpers import new_company
from tests.test_templates import api, stack_candidate

pytestmark = pytest.mark.fast


def uploads_of(engine, company_id) -> int:
    with Session(engine) as session:
        return session.exec(
            select(func.count()).select_from(Upload).where(Upload.company_id == company_id)
        ).one()


async def test_an_upload_is_bounded_checked_and_named_by_a_send(engine, tmp_path):
    limits = {"max_attachment_bytes": 2_000_000, "max_message_bytes": 3_000_000}
    async with api(engine, tmp_path, **limits) as stack:
        tenant, other = stack.tenant(), stack.tenant()
        http = stack.http
        data = os.urandom(1_500_000)
        created = await http.post(
            "/v1/attachments",
            files={"file": ("../../etc/Offer letter.pdf", data, "application/pdf")},
            headers=tenant.headers,
        )
        assert created.status_code == 201, created.text
        upload = created.json()
        assert upload["filename"] == "Offer letter.pdf" and upload["size"] == len(data)
        assert upload["content_type"] == "application/pdf"
        with Session(engine) as session:
            stored = session.get(Upload, uuid.UUID(upload["id"]))
            assert stored is not None and stored.sealed
            # Encrypted at rest, bound to its row: not the file's bytes, nor any run of them.
            assert data[:64] not in stored.content and len(stored.content) > len(data)
            box = secret_box(stack.settings)
            opened = files_at_rest.opened(box, stored.id, stored.content, stored.sealed)
            assert hashlib.sha256(opened).digest() == hashlib.sha256(data).digest()

        before = uploads_of(engine, tenant.company.id)
        too_big = await http.post(
            "/v1/attachments",
            files={"file": ("big.bin", os.urandom(2_100_000), "application/octet-stream")},
            headers=tenant.headers,
        )
        assert too_big.status_code == 413 and "RECRUITMAIL_MAX_ATTACHMENT_BYTES" in too_big.text
        not_a_form = await http.post(
            "/v1/attachments", content=b"raw bytes", headers=tenant.headers
        )
        assert not_a_form.status_code == 415 and "multipart/form-data" in not_a_form.text
        wrong_field = await http.post(
            "/v1/attachments", files={"document": ("a.txt", b"x")}, headers=tenant.headers
        )
        assert wrong_field.status_code == 422 and "named file" in wrong_field.text

        async def stops_halfway():
            yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\n\r\n'
            yield os.urandom(500_000)
            raise ConnectionResetError("the client went away")

        # The body breaks off mid-file (the in-process transport hands the app the failure).
        broken = await http.post(
            "/v1/attachments",
            content=stops_halfway(),
            headers={**tenant.headers, "Content-Type": "multipart/form-data; boundary=b"},
        )
        assert broken.status_code != 201
        assert uploads_of(engine, tenant.company.id) == before  # nothing left behind

        candidate = await stack_candidate(http, tenant)

        async def send(headers, candidate_id, **fields):
            return await http.post(
                f"/v1/candidates/{candidate_id}/messages",
                json={"subject": "Your offer", "text": "Attached.", **fields},
                headers=headers,
            )

        theirs = await stack_candidate(http, other)
        foreign = await send(other.headers, theirs["id"], attachment_ids=[upload["id"]])
        assert foreign.status_code == 422 and upload["id"] in foreign.json()["detail"]
        second = (
            await http.post(
                "/v1/attachments",
                files={
                    "file": ("C:\\Users\\ada\\cv.pdf", os.urandom(1_600_000), "application/pdf")
                },
                headers=tenant.headers,
            )
        ).json()
        over = await send(
            tenant.headers, candidate["id"], attachment_ids=[upload["id"], second["id"]]
        )
        assert over.status_code == 422 and "RECRUITMAIL_MAX_MESSAGE_BYTES" in over.json()["detail"]


def test_uploads_are_deleted_a_day_after_they_were_made(engine):
    company_id = new_company(engine)
    with Session(engine) as session:
        for age in (timedelta(hours=23), timedelta(hours=25)):
            session.add(
                Upload(
                    company_id=company_id, filename="a", content_type="text/plain", size=1,
                    sha256="0" * 64, content=b"a", created_at=utcnow() - age,
                )
            )  # fmt: skip
        session.commit()
        assert purge(session) >= 1
        session.commit()
    assert uploads_of(engine, company_id) == 1  # the younger one stays
