"""Files to send (issue 35, in part): POST /v1/attachments takes one file as a multipart
upload, bounded before it is read; a single send names uploads in `attachment_ids`; an upload
is another company's to nobody, and is deleted a day after it was made."""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from datetime import timedelta

import pytest
from cryptography.exceptions import InvalidTag
from sqlmodel import Session, col, func, select

from core import attachments as files_at_rest
from core.attachments import purge
from core.db import make_engine
from core.errors import TooLarge
from core.migrate import upgrade
from core.models import Attachment, FileChunk, Upload, utcnow
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
        box = secret_box(stack.settings)
        with Session(engine) as session:
            stored = session.get(Upload, uuid.UUID(upload["id"]))
            assert stored is not None and stored.sealed
            # Over 1 MiB: two sealed chunks, the row's own content empty.
            assert stored.chunks == 2 and stored.content == b""
            chunks = chunks_of(session, stored.id)
            assert [len(c) > 0 for c in chunks] == [True, True]
            # Encrypted at rest, bound to its file and place: not the file's bytes, nor any run.
            assert all(data[:64] not in c and data[-64:] not in c for c in chunks)
            opened = files_at_rest.read_all(
                session, box, stored.id, stored.content, stored.sealed, stored.chunks
            )
            assert hashlib.sha256(opened).digest() == hashlib.sha256(data).digest()
            assert stored.sha256 == hashlib.sha256(data).hexdigest()

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
        assert orphan_chunks(engine) == 0  # no chunk of it either

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


def chunks_of(session: Session, file_id: uuid.UUID) -> list[bytes]:
    return list(
        session.exec(
            select(FileChunk.content).where(FileChunk.file_id == file_id).order_by(FileChunk.seq)
        )
    )


def orphan_chunks(engine) -> int:
    """Chunks whose file is neither an upload nor an attachment."""
    with Session(engine) as session:
        return session.exec(
            select(func.count())
            .select_from(FileChunk)
            .where(
                col(FileChunk.file_id).not_in(select(Upload.id)),
                col(FileChunk.file_id).not_in(select(Attachment.id)),
            )
        ).one()


def test_a_chunk_opens_only_in_its_own_file_and_place_and_a_file_cut_short_does_not(tmp_path):
    """A large file's chunks: each sealed with its file's id, its place and whether it is the
    last; moving, swapping or dropping one is found when the file is read."""
    from tests.helpers import test_settings

    box = secret_box(test_settings(tmp_path))
    data = os.urandom(3 * files_at_rest.CHUNK + 10)
    url = f"sqlite:///{tmp_path / 'chunks.db'}"
    upgrade(url)
    engine = make_engine(url)
    a, b = uuid.uuid4(), uuid.uuid4()

    def reading(file_id: uuid.UUID, chunks: int) -> bytes:
        with Session(engine) as session:
            return files_at_rest.read_all(session, box, file_id, b"", True, chunks)

    with Session(engine) as session:
        for file_id in (a, b):
            stored = files_at_rest.store_stream(
                session, box, file_id, io.BytesIO(data).read, len(data), "file"
            )
            assert stored.chunks == 4 and stored.size == len(data)
        session.commit()
    assert reading(a, 4) == data

    def swap(first: tuple[uuid.UUID, int], second: tuple[uuid.UUID, int]) -> None:
        with Session(engine) as session:
            one = session.get(FileChunk, first)
            two = session.get(FileChunk, second)
            assert one is not None and two is not None
            one.content, two.content = two.content, one.content
            session.commit()

    swap((a, 1), (b, 1))  # moved to another file: same place
    with pytest.raises(InvalidTag):
        reading(a, 4)
    swap((a, 1), (b, 1))
    swap((a, 0), (a, 1))  # reordered within the file
    with pytest.raises(InvalidTag):
        reading(a, 4)
    swap((a, 0), (a, 1))
    assert reading(a, 4) == data
    with pytest.raises(InvalidTag):  # cut short: its new last chunk was not sealed as the last
        reading(a, 3)
    with pytest.raises(InvalidTag):  # longer than stored: its last chunk was not the last
        reading(a, 5)
    with Session(engine) as session:
        session.delete(session.get(FileChunk, (a, 3)))
        session.commit()
    with pytest.raises(ValueError, match="missing its chunk 4 of 4"):
        reading(a, 4)
    with Session(engine) as session, pytest.raises(TooLarge):  # the limit stops the stream
        files_at_rest.store_stream(session, box, uuid.uuid4(), io.BytesIO(data).read, 10, "x")
    engine.dispose()


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
        old = Upload(
            company_id=company_id, filename="b", content_type="text/plain", size=1,
            sha256="0" * 64, content=b"", chunks=2, created_at=utcnow() - timedelta(hours=25),
        )  # fmt: skip
        session.add(old)
        old_id = old.id
        for seq in (0, 1):
            session.add(FileChunk(file_id=old_id, seq=seq, content=b"sealed"))
        session.commit()
        assert purge(session) >= 2
        session.commit()
        assert chunks_of(session, old_id) == []  # its chunks went with it
    assert uploads_of(engine, company_id) == 1  # the younger one stays


async def test_a_message_sent_from_storage_is_the_message_composed_whole_byte_for_byte():
    """A single send's files stay in storage and go into its MIME a chunk at a time as it is
    sent: the same bytes as composing it with the files in, its size known without reading
    them (the provider's limits are checked before any attempt)."""
    from datetime import UTC, datetime
    from email import message_from_bytes, policy

    from core.mail import compose, file_parts, files_boundary, splice
    from providers.base import Outgoing, OutgoingFile

    files = [
        ("Offer letter.pdf", "application/pdf", os.urandom(3 * files_at_rest.CHUNK + 5)),
        ("notes.txt", "text/plain", b"one line\n"),
        ("empty.bin", "application/octet-stream", b""),
        ("Zeugnis für Grace.pdf", "application/pdf", os.urandom(57 * 1000)),
    ]
    boundary = files_boundary(uuid.uuid4())
    fields = {
        "from_address": "jobs@acme.example",
        "from_name": "Acme",
        "to_address": "grace@example.com",
        "to_name": "Grace",
        "subject": "Your offer",
        "text": "Attached.",
        "html": "<p>Attached.</p>",
        "message_id": "<m1@acme.example>",
        "date": datetime(2026, 12, 8, tzinfo=UTC),
        "boundary": boundary,
    }
    _, head = compose(files_later=True, **fields)

    def reader(data: bytes, step: int):
        async def read():
            for start in range(0, len(data), step):
                yield data[start : start + step]

        return read

    for step in (files_at_rest.CHUNK, 1000, 7):
        carried = [f for f in files if step > 7 or len(f[2]) < 100_000]  # 7: the small ones
        mail = Outgoing(
            head.mime,
            head.envelope_from,
            head.envelope_to,
            files=tuple(OutgoingFile(n, k, len(d), reader(d, step)) for n, k, d in carried),
            files_boundary=boundary,
        )
        # What composing with the files in writes (core/mail.compose: the head, then the parts).
        expected = splice(head.mime, file_parts(boundary, carried))
        assert mail.size == len(expected)
        sent = (await mail.whole()).mime
        assert sent == expected
        parsed = message_from_bytes(sent, policy=policy.default)
        assert [p.get_payload(decode=True) for p in parsed.iter_attachments()] == [
            d for _, _, d in carried
        ]
