"""Privacy with real peers: mail in through the real SMTP receiver, out through the dev outbox
(an SMTP sink that files what it receives), histories fetched from the Temporal dev server and
decoded through the codec, the SQLite files read byte by byte, the retention question answered
in Chromium at a phone's width, and a worker killed with SIGKILL mid-erasure."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import signal
import smtplib
import subprocess
import sys
import uuid
import zipfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import formatdate, make_msgid
from pathlib import Path

import httpx
from playwright.async_api import expect
from sqlalchemy import delete, func
from sqlmodel import Session, col, select

from api.app import create_app
from api.runs import ensure_retention_schedule
from core import attachments as files_at_rest
from core.inbound import parse
from core.models import (
    ApplicationStatus,
    Attachment,
    Candidate,
    Erasure,
    FileChunk,
    InboundRaw,
    MailboxThrottle,
    Message,
    Upload,
    WebhookAttempt,
    utcnow,
)
from core.privacy import ERASED_NAME
from core.security import secret_box
from core.statuses import MessageStatus
from tests.browser import DESKTOP, PHONE, browser, check_page, new_context, screenshot, served
from tests.fakes.net import free_port
from tests.fakes.smtp import SmtpSink
from tests.fakes.webhooks import WebhookReceiver
from tests.helpers import (
    TEST_KEY,
    Stack,
    Tenant,
    decoded_history,
    eventually,
    relay_stack,
    running_stack,
)
from tests.mail_samples import dsn_bounce
from worker.inbound_smtp import InboundSmtpServer
from worker.outbox import start_outbox
from workflows.privacy import RetentionSweepWorkflow

ROOT = Path(__file__).resolve().parent.parent


@asynccontextmanager
async def mail_stack(temporal_client, engine, tmp_path, **overrides) -> AsyncIterator[tuple]:
    """A stack whose platform transport is the dev outbox, with the real inbound receiver."""
    port = free_port()
    outbox = start_outbox(tmp_path / "outbox", "127.0.0.1", port)
    try:
        async with running_stack(
            temporal_client,
            engine,
            tmp_path,
            platform_transport="dev_outbox",
            dev_outbox_port=port,
            **{"inbound_smtp_port": 0, **overrides},  # any free port: suites run in parallel
        ) as stack:
            server = InboundSmtpServer(stack.settings, stack.engine, stack.client)
            smtp_port = await server.start()
            try:
                yield stack, smtp_port
            finally:
                await server.stop()
    finally:
        outbox.stop()


async def deliver(port: int, raw: bytes) -> None:
    def send() -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            smtp.sendmail("mta@outside.example", [str(message_from_bytes(raw)["To"])], raw)

    await asyncio.to_thread(send)


def reply_with_cv(
    sender: str, name: str, to: str, in_reply_to: str, subject: str, body: str, cv: str
) -> bytes:
    mail = EmailMessage()
    mail["From"] = f"{name} <{sender}>"
    mail["To"] = to
    mail["Subject"] = subject
    mail["Date"] = formatdate()
    mail["Message-ID"] = make_msgid(domain="mail.example")
    mail["In-Reply-To"] = in_reply_to
    mail.set_content(body)
    mail.add_attachment(cv, subtype="plain", filename="cv.txt")
    return mail.as_bytes(policy=default_policy.clone(linesep="\r\n"))


async def messages_of(stack: Stack, tenant: Tenant, candidate_id: str) -> list[dict]:
    answer = await stack.http.get(f"/v1/candidates/{candidate_id}/messages", headers=tenant.headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


async def inbound_count(stack: Stack, tenant: Tenant, candidate_id: str, count: int) -> list:
    return await eventually(
        lambda: messages_of(stack, tenant, candidate_id),
        lambda found: sum(m["direction"] == "inbound" for m in found) >= count,
        what=f"{count} received messages",
    )


async def erase(stack: Stack, tenant: Tenant, candidate_id: str, timeout=60.0) -> dict:
    answer = await stack.http.post(f"/v1/candidates/{candidate_id}/erase", headers=tenant.headers)
    assert answer.status_code == 202, answer.text
    return await erasure_done(stack, tenant, answer.json()["id"], timeout)


async def erasure_done(stack: Stack, tenant: Tenant, erasure_id: str, timeout=60.0) -> dict:
    async def fetch() -> dict:
        return (await stack.http.get(f"/v1/erasures/{erasure_id}", headers=tenant.headers)).json()

    return await eventually(fetch, lambda e: e["status"] == "done", timeout=timeout, what="erasure")


def database_bytes(engine) -> bytes | None:
    """The SQLite database and its write-ahead log, as they are on disk (None on PostgreSQL).

    Read by another process: closing a file descriptor of the database in this one would drop
    every POSIX lock SQLite holds on it here, and another process could then reset the log
    under our open connections (sqlite.org/howtocorrupt.html, 2.2)."""
    if engine.dialect.name != "sqlite":
        return None
    path = engine.url.database
    files = [p for p in (path, f"{path}-wal", f"{path}-journal") if Path(p).exists()]
    return subprocess.run(["cat", *files], capture_output=True, check=True).stdout


async def company_runs(client, company_id: str, must_include: set[str]) -> list[tuple[str, str]]:
    """(workflow id, run id) of every run of the company, once visibility lists those named."""

    async def runs() -> list[tuple[str, str]]:
        return [
            (r.id, r.run_id) async for r in client.list_workflows(f"CompanyId = '{company_id}'")
        ]

    return await eventually(
        runs,
        lambda found: must_include <= {i for i, _ in found},
        timeout=30,
        what=f"the runs {sorted(must_include)} in visibility",
    )


# -- erasure on request ----------------------------------------------------------------------


async def test_an_erased_candidate_leaves_nothing_readable_anywhere(
    temporal_client, engine, tmp_path
):
    tag = uuid.uuid4().hex[:8]
    zelda = f"zelda.{tag}@example.com"
    subject, body = f"Interview slot {tag}", f"Bring your portfolio {tag}"
    cv = f"Curriculum vitae {tag}: ten years of COBOL"
    reply = f"Tuesday suits me {tag}"
    secrets = [zelda, subject, body, cv, reply, f"Quokka{tag}"]
    # One bulk message every two minutes: the second waits behind the throttle.
    async with mail_stack(
        temporal_client, engine, tmp_path, reply_notifications=True,
        bulk_rate_platform_per_minute=0.5,
    ) as (stack, smtp):  # fmt: skip
        try:
            tenant = stack.tenant()
            hosted = stack.settings.hosted_address(tenant.company.slug)
            await stack.http.put(
                "/v1/privacy", json={"notification_names_candidate": True}, headers=tenant.headers
            )
            a = await stack.candidate(tenant, name=f"Zelda Quokka{tag}", email=zelda)
            b = await stack.candidate(tenant, name="Brian Other")
            # Sent, replied to with a CV (a notice goes to the recruiter), bounced.
            first = await stack.send(tenant, a["id"], subject=subject, text=body)
            first = await stack.wait_for_status(tenant, first["id"], {"sent"})
            await deliver(
                smtp,
                reply_with_cv(zelda, f"Zelda Quokka{tag}", hosted, first["message_id_header"],
                              f"Re: {subject}", reply, cv),
            )  # fmt: skip
            await inbound_count(stack, tenant, a["id"], 1)
            second = await stack.send(tenant, a["id"], subject=f"Second {subject}", text=body)
            second = await stack.wait_for_status(tenant, second["id"], {"sent"})
            await deliver(smtp, dsn_bounce(
                to=hosted, failed_recipient=zelda, original_message_id=second["message_id_header"]
            ))  # fmt: skip
            await stack.wait_for_status(tenant, second["id"], {"bounced"})
            # The bounce put the address on the suppression list; an admin released it (the
            # list's events and audit lines name it, and must forget it with the rest).
            released = await stack.http.delete(f"/v1/suppressions/{zelda}", headers=tenant.headers)
            assert released.status_code == 204, released.text
            # A bulk message that goes out, and one that waits for the throttle's next slot.
            # The job keeps its template (the company's text); each message, rendered, goes.
            bulk = {"subject": "News for {{candidate.name}}", "text": "Dear {{candidate.name}}"}
            sent_job = await _bulk(stack, tenant, [a["id"]], bulk)
            await eventually(
                lambda: _job(stack, tenant, sent_job["id"]), lambda j: j["counts"]["sent"] == 1,
                what="the first bulk message sent",
            )  # fmt: skip
            held_job = await _bulk(stack, tenant, [a["id"]], bulk)
            await eventually(
                lambda: _job(stack, tenant, held_job["id"]), lambda j: j["next_send_at"],
                what="the second bulk message held by the throttle",
            )  # fmt: skip
            # The other candidate's mail, which must stay.
            kept = await stack.send(tenant, b["id"], subject=f"Kept {tag}", text="Stays")
            kept = await stack.wait_for_status(tenant, kept["id"], {"sent"})
            await deliver(
                smtp,
                reply_with_cv(b["email"], "Brian Other", hosted, kept["message_id_header"],
                              f"Re: Kept {tag}", "Mine stays", f"Brian CV {tag}"),
            )  # fmt: skip
            b_messages = await inbound_count(stack, tenant, b["id"], 1)
            outbox = tmp_path / "outbox" / str(tenant.company.id)
            await eventually(
                lambda: _async(lambda: [p for p in outbox.glob("*.json") if a["id"] in p.read_text()]),  # noqa: E501
                what="the reply notice in the dev outbox",
            )  # fmt: skip
            assert any(zelda in p.read_text() for p in outbox.glob("*.json"))

            answer = await stack.http.post(
                f"/v1/candidates/{a['id']}/erase", headers=tenant.headers
            )
            again = await stack.http.post(f"/v1/candidates/{a['id']}/erase", headers=tenant.headers)
            assert answer.status_code == 202, answer.text
            assert again.json()["id"] == answer.json()["id"]
            erasure = await erasure_done(stack, tenant, answer.json()["id"])
            after = (
                await stack.http.get(f"/v1/candidates/{a['id']}", headers=tenant.headers)
            ).json()
            a_messages = await messages_of(stack, tenant, a["id"])
            held = await eventually(
                lambda: _job(stack, tenant, held_job["id"]),
                lambda j: j["counts"]["cancelled"] == 1,
                what="the held bulk message cancelled",
            )  # fmt: skip
            refused_send = await stack.http.post(
                f"/v1/candidates/{a['id']}/messages", json={"subject": "x", "text": "y"},
                headers=tenant.headers,
            )  # fmt: skip
            refused_bulk = await stack.http.post(
                "/v1/bulk-messages", json={"candidate_ids": [a["id"]], **bulk},
                headers=tenant.headers,
            )  # fmt: skip
            refused_edit = await stack.http.patch(
                f"/v1/candidates/{a['id']}", json={"name": "Back"}, headers=tenant.headers
            )
            feed = (await stack.http.get("/v1/events", headers=tenant.headers)).json()
            b_after = await messages_of(stack, tenant, b["id"])
            cv_b = next(m for m in b_after if m["attachments"])
            b_cv = await stack.http.get(
                f"/v1/messages/{cv_b['id']}/attachments/{cv_b['attachments'][0]['id']}",
                headers=tenant.headers,
            )
            runs = await company_runs(
                stack.client, str(tenant.company.id),
                {first["workflow_id"], second["workflow_id"], sent_job["workflow_id"],
                 f"erase-candidate-{a['id']}"},
            )  # fmt: skip
            histories = {
                (wid, rid): await decoded_history(stack.client, wid, rid) for wid, rid in runs
            }
            # The erasure truncates SQLite's log itself, or the relay does once it is quiet.
            on_disk = await eventually(
                lambda: _async(lambda: database_bytes(engine)),
                lambda found: found is None or not any(s.encode() in found for s in secrets),
                fail=False,
            )
            outbox_files = "".join(p.read_text() for p in outbox.glob("*.json"))
        finally:
            with Session(engine) as session:  # the platform throttle is shared by the suite
                session.exec(delete(MailboxThrottle).where(MailboxThrottle.key == "platform"))
                session.commit()

    # The API: an anonymised candidate, every message without content, statuses kept.
    assert after["name"] == ERASED_NAME and after["email"] == "" and after["erased_at"]
    assert after["email_bounce_detail"] is None
    assert all(m["subject"] == "" and m["text"] == "" and m["html"] is None for m in a_messages)
    assert all(m["attachments"] == [] and m["to_addresses"] == [] for m in a_messages)
    statuses = sorted(m["status"] for m in a_messages)
    assert statuses == ["bounced", "cancelled", "received", "received", "sent", "sent"], statuses
    assert erasure["messages_cancelled"] == 1 and erasure["messages_erased"] == 6
    assert erasure["attachments_deleted"] == 1 and erasure["raw_messages_erased"] == 2
    assert erasure["outbox_copies_deleted"] >= 4  # two sends, a bulk message, the notice
    assert held["counts"] == {**held["counts"], "cancelled": 1, "sent": 0}
    assert refused_send.status_code == 409 and "erased" in refused_send.json()["detail"]
    assert refused_bulk.status_code == 422 and a["id"] in refused_bulk.text
    assert refused_edit.status_code == 409
    [told] = [e for e in feed["data"] if e["type"] == "candidate.erased"]
    assert told["data"]["candidate_id"] == a["id"] and told["data"]["messages_erased"] == 6
    # The other candidate's mail is untouched.
    assert {m["subject"] for m in b_after} == {m["subject"] for m in b_messages} != {""}
    assert b_cv.status_code == 200 and b_cv.content.strip() == f"Brian CV {tag}".encode()
    assert f"Kept {tag}" in outbox_files
    # Nothing readable is left: the dev outbox, the database files, every decoded history.
    for secret in secrets:
        assert secret not in outbox_files, secret
        assert secret not in json.dumps(feed), secret
        if on_disk is not None:
            assert secret.encode() not in on_disk, secret
        for run, history in histories.items():
            assert secret.encode() not in history, (secret, run)
    if on_disk is not None:
        assert f"Brian CV {tag}".encode() in on_disk  # the search reads what is there
    erase_history = histories[next(r for r in runs if r[0] == f"erase-candidate-{a['id']}")]
    assert a["id"].encode() in erase_history  # decoded: the ids are readable
    assert len(runs) >= 8  # sends, routings, bulk runs, the notice, the erasure


async def _async(fn):
    return fn()


async def _bulk(stack: Stack, tenant: Tenant, ids: list[str], body: dict) -> dict:
    answer = await stack.http.post(
        "/v1/bulk-messages", json={"candidate_ids": ids, **body}, headers=tenant.headers
    )
    assert answer.status_code == 202, answer.text
    return answer.json()


async def _job(stack: Stack, tenant: Tenant, job_id: str) -> dict:
    return (await stack.http.get(f"/v1/bulk-messages/{job_id}", headers=tenant.headers)).json()


async def test_a_refused_recipient_reaches_history_encoded_and_without_its_address(
    temporal_client, engine, tmp_path
):
    tag = uuid.uuid4().hex[:8]
    address = f"gone.{tag}@example.com"
    refusal = f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
    with SmtpSink(data_script=[refusal]) as sink:
        async with running_stack(
            temporal_client, engine, tmp_path, platform_transport="smtp",
            smtp_relay_url=f"smtp://127.0.0.1:{sink.port}",
        ) as stack:  # fmt: skip
            tenant = stack.tenant()
            candidate = await stack.candidate(tenant, email=address)
            queued = await stack.send(tenant, candidate["id"])
            failed = await stack.wait_for_status(tenant, queued["id"], {"failed"})
            handle = stack.client.get_workflow_handle(queued["workflow_id"])
            await handle.result()
            stored = await handle.fetch_history()
            decoded = await decoded_history(stack.client, queued["workflow_id"])
    raw = b"".join(e.SerializeToString() for e in stored.events)
    # The recruiter reads the whole refusal; history holds it encoded, the address masked.
    assert address in failed["error"]
    assert b"Encoded failure" in raw and b"5.1.1" not in raw
    assert b"550 5.1.1 <[address]>" in decoded
    assert address.encode() not in raw and address.encode() not in decoded


# -- export -----------------------------------------------------------------------------------


async def test_an_export_round_trips_to_the_same_messages(temporal_client, engine, tmp_path):
    tag = uuid.uuid4().hex[:8]
    async with mail_stack(temporal_client, engine, tmp_path) as (stack, smtp):
        tenant = stack.tenant()
        hosted = stack.settings.hosted_address(tenant.company.slug)
        candidate = await stack.candidate(tenant, name="Ines Export")
        sent = await stack.send(tenant, candidate["id"], subject=f"Offer {tag}", text="Details")
        sent = await stack.wait_for_status(tenant, sent["id"], {"sent"})
        raw_reply = reply_with_cv(
            candidate["email"], "Ines Export", hosted, sent["message_id_header"],
            f"Re: Offer {tag}", "Yes!", "CV",
        )  # fmt: skip
        await deliver(smtp, raw_reply)
        # A file over a chunk (1 MiB): stored in chunks, added to the MIME as it was sent.
        portfolio = os.urandom(1_500_000)
        uploaded = await stack.http.post(
            "/v1/attachments",
            files={"file": ("portfolio.zip", portfolio, "application/zip")},
            headers=tenant.headers,
        )
        with_file = await stack.send(
            tenant, candidate["id"], subject=f"Files {tag}", text="Attached",
            attachment_ids=[uploaded.json()["id"]],
        )  # fmt: skip
        with_file = await stack.wait_for_status(tenant, with_file["id"], {"sent"})
        listed = await inbound_count(stack, tenant, candidate["id"], 1)
        delivered = {
            json.loads(p.read_text())["raw"]
            for p in (tmp_path / "outbox" / str(tenant.company.id)).glob("*.json")
        }
        answer = await stack.http.get(
            f"/v1/candidates/{candidate['id']}/export", headers=tenant.headers
        )
        other = stack.tenant()
        foreign = await stack.http.get(
            f"/v1/candidates/{candidate['id']}/export", headers=other.headers
        )
        with Session(engine) as session:
            stored = {
                str(m.id): m
                for m in session.exec(
                    select(Message).where(Message.candidate_id == uuid.UUID(candidate["id"]))
                )
            }
            box = secret_box(stack.settings)
            contents = {
                str(a.message_id): files_at_rest.read_all(
                    session, box, a.id, a.content, a.sealed, a.chunks
                )
                for a in session.exec(
                    select(Attachment).where(
                        col(Attachment.message_id).in_([m.id for m in stored.values()])
                    )
                )
            }
            raws = {
                str(r.message_id): r.raw
                for r in session.exec(
                    select(InboundRaw).where(
                        col(InboundRaw.message_id).in_([m.id for m in stored.values()])
                    )
                )
            }

    assert answer.status_code == 200 and answer.headers["content-type"] == "application/zip"
    assert foreign.status_code == 404
    archive = zipfile.ZipFile(io.BytesIO(answer.content))
    index = json.loads(archive.read("messages.json"))
    assert index["candidate"]["email"] == candidate["email"]
    assert [e["id"] for e in index["messages"]] == [m["id"] for m in listed]
    for entry in index["messages"]:
        eml = archive.read(entry["eml"])
        message = stored[entry["id"]]
        reparsed = parse(eml)
        assert reparsed.subject == message.subject == entry["subject"]
        assert reparsed.message_id == message.message_id_header
        if message.direction == "inbound":
            assert eml == raws[entry["id"]] == raw_reply
            assert reparsed.text.strip() == message.text.strip()
            [attached] = entry["attachments"]
            content = archive.read(attached["path"])
            assert content.strip() == b"CV" and content == contents[entry["id"]]
            assert [a.content for a in reparsed.attachments] == [content]
        elif message.mime_without_files:  # its file added from its chunks, as it was sent
            assert entry["id"] == with_file["id"] and eml != message.raw_mime
            assert eml.decode() in delivered
            [attached] = entry["attachments"]
            assert archive.read(attached["path"]) == portfolio
            [part] = list(message_from_bytes(eml, policy=default_policy).iter_attachments())
            assert part.get_payload(decode=True) == portfolio
        else:
            assert eml == message.raw_mime
            assert candidate["email"] in str(message_from_bytes(eml)["To"])
    assert with_file["id"] in [e["id"] for e in index["messages"]]


# -- retention --------------------------------------------------------------------------------


def _candidate(engine, company_id, *, closed_days_ago: float | None, **fields) -> str:
    with Session(engine) as session:
        candidate = Candidate(
            company_id=company_id,
            name=fields.pop("name", "Retained Person"),
            email=fields.pop("email", f"r.{uuid.uuid4().hex[:8]}@example.com"),
            application_status=(
                ApplicationStatus.CLOSED if closed_days_ago is not None else ApplicationStatus.OPEN
            ),
            closed_at=(
                utcnow() - timedelta(days=closed_days_ago) if closed_days_ago is not None else None
            ),
            **fields,
        )
        session.add(candidate)
        session.commit()
        return str(candidate.id)


def _unassigned(engine, company_id, days_old: float) -> str:
    with Session(engine) as session:
        message = Message(
            company_id=company_id,
            direction="inbound",
            status=MessageStatus.RECEIVED,
            from_address=f"stranger.{uuid.uuid4().hex[:6]}@example.com",
            subject="Old unassigned",
            message_id_header=f"<{uuid.uuid4().hex}@old.example>",
            created_at=utcnow() - timedelta(days=days_old),
        )
        session.add(message)
        session.flush()
        attachment = Attachment(
            message_id=message.id, filename="a.txt", content_type="text/plain", size=1,
            sha256="0" * 64, content=b"", chunks=1,
        )  # fmt: skip
        session.add(attachment)
        session.add(FileChunk(file_id=attachment.id, seq=0, content=b"sealed"))  # a large file's
        session.commit()
        return str(message.id)


def _state(engine, ids: list[str]) -> dict[str, tuple]:
    with Session(engine) as session:
        found = {}
        for i in ids:
            candidate = session.get(Candidate, uuid.UUID(i))
            if candidate is not None:
                found[i] = (candidate.erased_at is not None, candidate.erasure_requested_at)
            else:
                found[i] = ("message", session.get(Message, uuid.UUID(i)) is not None)
        return found


async def test_the_retention_schedule_erases_exactly_what_is_due_and_is_safe_to_run_twice(
    temporal_client, engine, tmp_path
):
    async with running_stack(temporal_client, engine, tmp_path) as stack:
        tenant, quiet = stack.tenant(), stack.tenant()
        answer = await stack.http.put(
            "/v1/privacy",
            json={"erase_after_days_closed": 30, "unassigned_retention_days": 60},
            headers=tenant.headers,
        )
        assert answer.status_code == 200, answer.text
        company, other = tenant.company.id, quiet.company.id
        due = _candidate(engine, company, closed_days_ago=31)
        recent = _candidate(engine, company, closed_days_ago=29)
        still_open = _candidate(engine, company, closed_days_ago=None)
        agreed = _candidate(
            engine, company, closed_days_ago=90, retain_until=utcnow() + timedelta(days=20)
        )
        no_rule = _candidate(engine, other, closed_days_ago=400)
        old_mail = _unassigned(engine, company, 61)
        young_mail = _unassigned(engine, company, 59)
        default_old = _unassigned(engine, other, 181)  # the default: 180 days
        default_young = _unassigned(engine, other, 179)
        schedule_id = f"privacy-retention-{uuid.uuid4().hex[:8]}"
        await ensure_retention_schedule(stack.client, stack.settings, schedule_id)
        handle = stack.client.get_schedule_handle(schedule_id)
        try:
            for expected_runs in (1, 2):  # twice: the second run finds nothing more to do
                await handle.trigger()
                description = await eventually(
                    handle.describe,
                    lambda d, n=expected_runs: len(d.info.recent_actions) >= n,
                    what="the sweep started by the schedule",
                )
                started = description.info.recent_actions[-1].action
                await stack.client.get_workflow_handle(
                    started.workflow_id, run_id=started.first_execution_run_id
                ).result()
                if expected_runs == 1:
                    with Session(engine) as session:
                        erasure = session.exec(
                            select(Erasure).where(Erasure.candidate_id == uuid.UUID(due))
                        ).one()
                    await erasure_done(stack, tenant, str(erasure.id))
                    first_state = _state(engine, [due, recent, still_open, agreed, no_rule])
        finally:
            await handle.delete()
        second_state = _state(engine, [due, recent, still_open, agreed, no_rule])
        mail = _state(engine, [old_mail, young_mail, default_old, default_young])
        with Session(engine) as session:
            erasures = session.exec(
                select(func.count())
                .select_from(Erasure)
                .where(col(Erasure.company_id).in_([company, other]))
            ).one()
            attachments = session.exec(
                select(func.count())
                .select_from(Attachment)
                .where(
                    col(Attachment.message_id).in_([uuid.UUID(old_mail), uuid.UUID(default_old)])
                )
            ).one()
            # Their chunks went with them; the younger mail's stay.
            chunks = session.exec(
                select(func.count())
                .select_from(FileChunk)
                .join(Attachment, col(Attachment.id) == col(FileChunk.file_id))
                .where(
                    col(Attachment.message_id).in_(
                        [uuid.UUID(young_mail), uuid.UUID(default_young)]
                    )
                )
            ).one()
            orphans = session.exec(
                select(func.count())
                .select_from(FileChunk)
                .where(col(FileChunk.file_id).not_in(select(Attachment.id)))
                .where(col(FileChunk.file_id).not_in(select(Upload.id)))
            ).one()

    assert first_state[due][0] is True
    assert [first_state[i][0] for i in (recent, still_open, agreed, no_rule)] == [False] * 4
    assert all(first_state[i][1] is None for i in (recent, still_open, agreed, no_rule))
    assert second_state == first_state and erasures == 1
    assert mail == {
        old_mail: ("message", False), young_mail: ("message", True),
        default_old: ("message", False), default_young: ("message", True),
    }  # fmt: skip
    assert attachments == 0
    assert chunks == 2 and orphans == 0


async def test_the_retention_question_keep_delete_and_no_answer_in_a_browser(
    temporal_client, engine, tmp_path
):
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    async with relay_stack(temporal_client, engine, tmp_path, public_url=origin) as (stack, sink):
        tenant = stack.tenant()
        answer = await stack.http.put(
            "/v1/privacy",
            json={"erase_after_days_closed": 30, "consent_extension_days": 7},
            headers=tenant.headers,
        )
        assert answer.status_code == 200, answer.text
        company = tenant.company.id
        keeper = _candidate(engine, company, closed_days_ago=25, name="Kim Keeper")
        leaver = _candidate(engine, company, closed_days_ago=25, name="Lee Leaver")
        # Due in a few seconds: asked, and erased at the deadline without an answer.
        silent = _candidate(engine, company, closed_days_ago=30 - 8 / 86400, name="Sam Silent")
        later = _candidate(engine, company, closed_days_ago=10)  # not yet asked
        await stack.client.execute_workflow(
            RetentionSweepWorkflow.run,
            id=f"retention-sweep-{uuid.uuid4().hex[:8]}",
            task_queue=stack.settings.task_queue,
            arg=_sweep_input(),
        )
        asks = await sink.wait_for(3)
        links = {}
        for received in asks:
            text = received.message.get_body(("plain",)).get_content()
            link = next(w for w in text.split() if w.startswith(origin))
            links[received.rcpt_tos[0]] = link
        emails = _emails(engine, [keeper, leaver, silent])
        app = create_app(stack.settings, engine=engine, temporal_client=temporal_client)
        async with served(app, port), browser() as chromium:
            context = await new_context(chromium, PHONE, origin)
            page = await context.new_page()
            await page.goto(links[emails[keeper]])
            await expect(page.get_by_role("heading", level=1)).to_have_text(
                "May Acme keep your application?"
            )
            for viewport in (DESKTOP, PHONE):
                await page.set_viewport_size(viewport)
                await screenshot(page, "retention-question")
                await check_page(page)
            await page.get_by_role("button", name="Keep my application").click()
            await expect(page.get_by_role("status")).to_have_text(
                "Thank you: your application is kept."
            )
            await expect(page.get_by_role("heading", level=1)).to_have_text(
                "Your application is kept"
            )
            await screenshot(page, "retention-kept")
            await check_page(page)
            await page.goto(links[emails[leaver]])
            await page.get_by_role("button", name="Delete my data now").click()
            await expect(page.get_by_role("heading", level=1)).to_have_text(
                re.compile("Your data (is being|has been) deleted")
            )
            await check_page(page)
            forged = links[emails[keeper]].replace(keeper, leaver)
            await page.goto(forged)
            await expect(page.get_by_role("heading", level=1)).to_have_text(
                "This page is not available"
            )
        silent_erased = await eventually(
            lambda: _async(lambda: _state(engine, [silent])[silent][0]),
            timeout=60,
            what="the unanswered candidate erased at the deadline",
        )
        await eventually(
            lambda: _async(lambda: _state(engine, [leaver])[leaver][0]),
            what="the candidate who chose delete erased",
        )
        with Session(engine) as session:
            kept = session.get(Candidate, uuid.UUID(keeper))
            reasons = {
                str(e.candidate_id): e.reason
                for e in session.exec(select(Erasure).where(Erasure.company_id == company))
            }
            not_asked = session.get(Candidate, uuid.UUID(later))

    assert silent_erased is True
    assert kept.erased_at is None and kept.consent_asked_at is None
    assert kept.retain_until is not None and kept.retain_until > utcnow() + timedelta(days=29)
    assert reasons == {leaver: "consent", silent: "retention"}
    assert not_asked.consent_asked_at is None
    assert sorted(links) == sorted(emails.values())
    # The question's page is in the mail, signed; the subject names the company.
    assert all("May Acme keep your application?" == str(r.message["Subject"]) for r in asks)


def _sweep_input():
    from contracts.privacy import SweepInput

    return SweepInput()


def _emails(engine, ids: list[str]) -> dict[str, str]:
    with Session(engine) as session:
        return {i: session.get(Candidate, uuid.UUID(i)).email for i in ids}


# -- a crash mid-erasure ----------------------------------------------------------------------


def _many_messages(engine, company_id, candidate_id: str, count: int) -> None:
    rows = [
        {
            "id": uuid.uuid4(),
            "company_id": company_id,
            "candidate_id": uuid.UUID(candidate_id),
            "direction": "outbound",
            "status": MessageStatus.SENT.value,
            "kind": "mail",
            "from_address": "jobs@acme.example",
            "from_name": "Acme",
            "to_addresses": ["x"],
            "subject": f"Bulk subject {n}",
            "text": "A body of some length. " * 20,
            "message_id_header": f"<{uuid.uuid4().hex}@jobs.example>",
            "attempts": 1,
            "created_at": utcnow(),
            "updated_at": utcnow(),
        }
        for n in range(count)
    ]
    with Session(engine) as session:
        session.execute(Message.__table__.insert(), rows)  # type: ignore[attr-defined]
        session.commit()


async def test_a_worker_killed_mid_erasure_is_replaced_and_the_erasure_finishes(
    temporal_client, engine, tmp_path, database_url
):
    queue = f"crash-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECRUITMAIL_")}
    env.update(
        RECRUITMAIL_ENVIRONMENT="test",
        RECRUITMAIL_STATE_DIR=str(tmp_path),
        RECRUITMAIL_DATABASE_URL=database_url,
        RECRUITMAIL_TEMPORAL_ADDRESS=temporal_client.service_client.config.target_host,
        RECRUITMAIL_TASK_QUEUE=queue,
        RECRUITMAIL_SECRET_KEYS=TEST_KEY,
        RECRUITMAIL_PLATFORM_MAIL_DOMAIN="jobs.test.example",
        RECRUITMAIL_ERASE_BATCH_SIZE="20",
        RECRUITMAIL_REPLY_NOTIFICATIONS="false",
        RECRUITMAIL_LOG_FORMAT="text",
    )

    def spawn(name: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "worker"],
            cwd=ROOT,
            env=env,
            stdout=(tmp_path / f"{name}.log").open("ab"),
            stderr=subprocess.STDOUT,
        )

    async with running_stack(temporal_client, engine, tmp_path) as stack:
        tenant = stack.tenant()
        candidate = await stack.candidate(tenant)
        _many_messages(engine, tenant.company.id, candidate["id"], 3000)
        settings = stack.settings.model_copy(update={"task_queue": queue})
    app = create_app(settings, engine=engine, temporal_client=temporal_client)
    transport = httpx.ASGITransport(app=app)
    first = spawn("worker-1")
    second = None
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            api = Stack(settings, engine, temporal_client, http)
            answer = await http.post(
                f"/v1/candidates/{candidate['id']}/erase", headers=tenant.headers
            )
            assert answer.status_code == 202, answer.text
            erasure_id = answer.json()["id"]
            midway = await eventually(
                lambda: _get(http, tenant, erasure_id),
                lambda e: e["messages_erased"] >= 200,
                timeout=120,
                interval=0.05,
                what="the erasure under way",
            )
            first.send_signal(signal.SIGKILL)
            first.wait()
            stopped_at = (await _get(http, tenant, erasure_id))["messages_erased"]
            second = spawn("worker-2")
            done = await erasure_done(api, tenant, erasure_id, timeout=180)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(30)
    with Session(engine) as session:
        left = session.exec(
            select(func.count())
            .select_from(Message)
            .where(
                Message.candidate_id == uuid.UUID(candidate["id"]),
                col(Message.erased_at).is_(None),
            )
        ).one()
        subjects = session.exec(
            select(func.count())
            .select_from(Message)
            .where(Message.candidate_id == uuid.UUID(candidate["id"]), Message.subject != "")
        ).one()
    assert midway["status"] == "running" and stopped_at < 3000
    assert done["messages_erased"] == 3000  # each batch counted once: one transaction each
    assert left == 0 and subjects == 0


async def _get(http: httpx.AsyncClient, tenant: Tenant, erasure_id: str) -> dict:
    return (await http.get(f"/v1/erasures/{erasure_id}", headers=tenant.headers)).json()


async def test_erased_stays_erased_echoed_answers_late_replies_and_erasing_again(
    temporal_client, engine, tmp_path
):
    """An endpoint that receives personal data and echoes it keeps nothing of the candidate;
    a reply by thread after the erasure lands in Unassigned, not on the erased record, with no
    notice naming them; and the erasure can be asked for again."""
    tag = uuid.uuid4().hex[:8]
    name, subject = f"Zelda Echo {tag}", f"Offer {tag}"
    async with mail_stack(
        temporal_client, engine, tmp_path, reply_notifications=True, relay_interval=0.2
    ) as (stack, smtp):
        tenant = stack.tenant()
        hosted = stack.settings.hosted_address(tenant.company.slug)
        with WebhookReceiver(echo=True) as receiver:
            answer = await stack.http.post(
                "/v1/webhook-endpoints",
                json={"url": receiver.url, "event_types": ["*"], "include_personal_data": True},
                headers=tenant.headers,
            )
            endpoint = answer.json()
            candidate = await stack.candidate(tenant, name=name)
            sent = await stack.send(tenant, candidate["id"], subject=subject, text="Welcome")
            sent = await stack.wait_for_status(tenant, sent["id"], {"sent"})
            await eventually(
                lambda: _async(lambda: [d for d in receiver.received if name.encode() in d.body]),
                what="the echoed event",
            )
            deliveries_path = f"/v1/webhook-endpoints/{endpoint['id']}/deliveries"

            # The attempt's row is written once the echo is back: wait for it, not for the echo.
            async def listed() -> list:
                return (await stack.http.get(deliveries_path, headers=tenant.headers)).json()

            before = await eventually(
                listed,
                lambda found: any(d["response_body"] for d in found),
                what="the echoed delivery's attempt",
            )
            first = await erase(stack, tenant, candidate["id"])
            await deliver(
                smtp,
                reply_with_cv(candidate["email"], name, hosted, sent["message_id_header"],
                              f"Re: {subject}", "Late answer", "CV"),
            )  # fmt: skip
            late = await eventually(
                lambda: _unassigned_now(stack, tenant),
                lambda found: any(m["subject"] == f"Re: {subject}" for m in found),
                what="the late reply in Unassigned",
            )
            again = await stack.http.post(
                f"/v1/candidates/{candidate['id']}/erase", headers=tenant.headers
            )
            second = await erasure_done(stack, tenant, again.json()["id"])
            after = (await stack.http.get(deliveries_path, headers=tenant.headers)).json()
            on_tab = await messages_of(stack, tenant, candidate["id"])
            outbox = tmp_path / "outbox" / str(tenant.company.id)
            notices = "".join(p.read_text() for p in outbox.glob("*.json"))
        with Session(engine) as session:
            stored = [
                row.response_body
                for row in session.exec(
                    select(WebhookAttempt).where(
                        WebhookAttempt.endpoint_id == uuid.UUID(endpoint["id"])
                    )
                )
            ]
    echoed = [d for d in before if d["response_body"]]
    assert echoed and all(name not in d["response_body"] for d in before)
    assert all("not kept" in d["response_body"] for d in echoed)
    assert all(name not in d["response_body"] and subject not in d["response_body"] for d in after)
    assert all(name not in body and candidate["email"] not in body for body in stored)
    # The late reply: Unassigned, the erased record untouched, no notice naming them.
    [reply] = [m for m in late if m["subject"] == f"Re: {subject}"]
    assert reply["candidate_id"] is None and reply["match_reason"] == "none"
    assert "erased" in reply["match_detail"]
    assert all(m["direction"] == "outbound" for m in on_tab)
    assert name not in notices
    # Asked again: the same erasure, run again.
    assert again.status_code == 202 and again.json()["id"] == first["id"]
    assert second["status"] == "done"


async def _unassigned_now(stack: Stack, tenant: Tenant) -> list[dict]:
    answer = await stack.http.get("/v1/messages/unassigned", headers=tenant.headers)
    return answer.json()
