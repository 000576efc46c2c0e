"""Bulk sends end to end: the API, the BulkSend workflow on a real worker, real SMTP sinks."""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import subprocess
import sys
import uuid
from collections import Counter
from contextlib import asynccontextmanager
from datetime import timedelta
from email import message_from_bytes, policy
from pathlib import Path

import httpx
from sqlmodel import Session, func, select

from api.app import create_app
from api.schemas import BulkCreate
from api.services import bulk as service
from core.models import BulkFile, BulkJob, Candidate, Event, Message, User
from tests.fakes.smtp import SmtpSink
from tests.helpers import TEST_KEY, Stack, Tenant, eventually, running_stack
from tests.helpers import test_settings as stack_settings
from tests.oauth_world import connected, world
from worker.sweeper import resume_bulk_jobs

ROOT = Path(__file__).resolve().parent.parent


def relay(sink: SmtpSink, **more) -> dict:
    return {
        "platform_transport": "smtp",
        "smtp_relay_url": f"smtp://127.0.0.1:{sink.port}",
        **more,
    }


def add_candidates(stack: Stack, tenant: Tenant, count: int, **fields) -> list[str]:
    """Candidates straight into the database: the bulk API is under test, not creation."""
    with Session(stack.engine, expire_on_commit=False) as session:
        rows = [
            Candidate(
                company_id=tenant.company.id,
                name=fields.get("name", f"Cand{i:03d} Person"),
                email=f"c{i:03d}.{uuid.uuid4().hex[:6]}@example.com",
            )
            for i in range(count)
        ]
        session.add_all(rows)
        session.commit()
        return [str(r.id) for r in rows]


async def start_bulk(stack: Stack, tenant: Tenant, ids: list[str], **fields) -> dict:
    body = {
        "candidate_ids": ids,
        "subject": "Hello {{candidate.first_name}}",
        "text": "Dear {{candidate.name}},\nthanks for applying to {{company.name}}.\n"
        "{{sender.name}}",
        **fields,
    }
    response = await stack.http.post("/v1/bulk-messages", json=body, headers=tenant.headers)
    assert response.status_code == 202, response.text
    return response.json()


async def wait_job(
    http: httpx.AsyncClient, tenant: Tenant, job_id: str, statuses=("completed",), timeout=90
) -> dict:
    async def job() -> dict:
        return (await http.get(f"/v1/bulk-messages/{job_id}", headers=tenant.headers)).json()

    return await eventually(
        job,
        lambda j: j["status"] in statuses,
        timeout=timeout,
        interval=0.2,
        what=f"bulk send reaching {statuses}",
    )


async def runs_of(stack: Stack, workflow_id: str, at_least: int, timeout: float = 30) -> list:
    """The workflow's runs as visibility lists them; visibility lags a few seconds."""

    async def runs() -> list:
        return [r async for r in stack.client.list_workflows(f"WorkflowId = '{workflow_id}'")]

    return await eventually(
        runs, lambda r: len(r) >= at_least, timeout=timeout, interval=0.5, fail=False
    )


def message_ids(sink: SmtpSink) -> list[str]:
    return [" ".join(str(r.message["Message-ID"]).split()) for r in sink.received]


async def test_two_hundred_personalised_messages_each_once(temporal_client, engine, tmp_path):
    with SmtpSink() as sink:
        settings = relay(sink, bulk_batch_size=30, bulk_batches_per_run=3)
        async with running_stack(temporal_client, engine, tmp_path, **settings) as stack:
            tenant = stack.tenant(name="Globex")
            ids = add_candidates(stack, tenant, 200)
            job = await start_bulk(stack, tenant, ids + ids[:5])  # listed twice: sent once
            done = await wait_job(stack.http, tenant, job["id"])
            tab = await stack.http.get(f"/v1/candidates/{ids[7]}/messages", headers=tenant.headers)
            runs = await runs_of(stack, job["workflow_id"], at_least=3)
            with Session(engine) as session:
                events = session.exec(
                    select(Event.data).where(
                        Event.company_id == tenant.company.id, Event.type == "message.sent"
                    )
                ).all()

    assert job["total"] == 200 and job["status"] == "queued"
    assert done["counts"] == {
        "queued": 0,
        "sending": 0,
        "sent": 200,
        "failed": 0,
        "cancelled": 0,
        "skipped": 0,
    }
    assert done["progress"] == 1.0 and done["finished_at"]
    assert len(sink.received) == 200
    ids_seen = message_ids(sink)
    assert len(set(ids_seen)) == 200  # each its own Message-ID, none twice
    by_recipient = {r.rcpt_tos[0]: r.message for r in sink.received}
    assert len(by_recipient) == 200
    for address, message in by_recipient.items():
        number = address[1:4]
        assert message["Subject"] == "Hello Cand" + number
        body = message.get_body(("plain",)).get_content()
        assert f"Dear Cand{number} Person," in body and "applying to Globex." in body
    [own] = tab.json()
    assert own["status"] == "sent" and own["subject"] == "Hello Cand007"
    assert sink.handler.sessions <= 8  # 7 batches, each over one reused connection
    # The outcomes of batches running at once are committed together: each with its event.
    sent_events = Counter(data["message_id"] for data in events)
    assert len(sent_events) == 200 and set(sent_events.values()) == {1}
    assert {data["bulk_job_id"] for data in events} == {job["id"]}
    assert len(runs) >= 3  # continued as new every 3 batches


async def test_throttle_spaces_sends_across_jobs_and_shows_the_next_send(
    temporal_client, engine, tmp_path
):
    with SmtpSink() as sink:
        # 40 a minute: one send every 1.5 s through the platform mailbox, shared by both jobs.
        settings = relay(sink, bulk_rate_platform_per_minute=40)
        async with running_stack(temporal_client, engine, tmp_path, **settings) as stack:
            tenant, other = stack.tenant(), stack.tenant()
            first = await start_bulk(stack, tenant, add_candidates(stack, tenant, 2))
            second = await start_bulk(stack, other, add_candidates(stack, other, 2))
            due_seen = None

            async def jobs() -> list[dict]:
                nonlocal due_seen
                found = [
                    (await stack.http.get(f"/v1/bulk-messages/{j['id']}", headers=t.headers)).json()
                    for j, t in ((first, tenant), (second, other))
                ]
                due_seen = due_seen or next(
                    (j["next_send_at"] for j in found if j["next_send_at"]), None
                )
                return found

            await eventually(
                jobs, lambda js: all(j["status"] == "completed" for j in js), timeout=60, fail=False
            )

    times = sorted(r.at for r in sink.received)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(times) == 4
    # The rate holds across the two jobs: their slots are 1.5 s apart. A send starts in its
    # slot and arrives up to a moment later on a loaded machine, so one gap may shrink by that
    # moment and the next grow by it; the four together still span three slots (unthrottled,
    # they would arrive within a fraction of a second).
    assert min(gaps) >= 0.5 and times[-1] - times[0] >= 3 * 1.5 - 1.0, gaps
    assert due_seen is not None


async def test_cancel_mid_job_stops_what_is_not_sent(temporal_client, engine, tmp_path):
    with SmtpSink() as sink:
        settings = relay(sink, bulk_rate_platform_per_minute=300)  # one every 0.2 s
        async with running_stack(temporal_client, engine, tmp_path, **settings) as stack:
            tenant = stack.tenant()
            job = await start_bulk(stack, tenant, add_candidates(stack, tenant, 30))
            while len(sink.received) < 3:
                await asyncio.sleep(0.05)
            cancelled = await stack.http.post(
                f"/v1/bulk-messages/{job['id']}/cancel", headers=tenant.headers
            )
            done = await wait_job(stack.http, tenant, job["id"], ("cancelled",))
            # The run has ended: no batch is left to send anything more.
            await stack.client.get_workflow_handle(job["workflow_id"]).result()
            again = await stack.http.post(
                f"/v1/bulk-messages/{job['id']}/cancel", headers=tenant.headers
            )

    counts = done["counts"]
    assert cancelled.status_code == 200
    assert counts["sent"] == len(sink.received)
    assert 3 <= counts["sent"] < 30
    assert counts["sent"] + counts["cancelled"] == 30
    assert counts["queued"] == counts["sending"] == 0
    assert again.status_code == 409


async def test_dropped_connections_lose_and_double_nothing(temporal_client, engine, tmp_path):
    with SmtpSink() as sink:
        sink.handler.drop_after = 20
        async with running_stack(
            temporal_client, engine, tmp_path, **relay(sink, bulk_batch_size=100)
        ) as stack:
            tenant = stack.tenant()
            job = await start_bulk(stack, tenant, add_candidates(stack, tenant, 100))
            done = await wait_job(stack.http, tenant, job["id"])

    assert done["counts"]["sent"] == 100
    assert sink.handler.drops >= 4  # the server really dropped us, every 20 messages
    ids_seen = message_ids(sink)
    assert len(ids_seen) == 100 and len(set(ids_seen)) == 100


async def test_validation_and_tenant_isolation(temporal_client, engine, tmp_path):
    with SmtpSink() as sink:
        async with running_stack(
            temporal_client, engine, tmp_path, **relay(sink, bulk_max_recipients=3)
        ) as stack:
            tenant, other = stack.tenant(), stack.tenant()
            mine = add_candidates(stack, tenant, 4)
            theirs = add_candidates(stack, other, 1)

            async def post(**body):
                base = {"candidate_ids": mine[:1], "subject": "Hi", "text": "Hello"}
                return await stack.http.post(
                    "/v1/bulk-messages", json={**base, **body}, headers=tenant.headers
                )

            empty = await post(candidate_ids=[])
            too_many = await post(candidate_ids=mine)
            placeholder = await post(text="Hi {{candidate.age}} and {{ company.name }}")
            foreign = await post(candidate_ids=[mine[0], theirs[0]])
            injected_subject = await post(subject="Hi\r\nBcc: x@example.com")
            with Session(engine) as session:
                queued = session.exec(
                    select(func.count())
                    .select_from(BulkJob)
                    .where(BulkJob.company_id == tenant.company.id)
                ).one()
            job = await start_bulk(stack, other, theirs)
            peek = await stack.http.get(f"/v1/bulk-messages/{job['id']}", headers=tenant.headers)
            stop = await stack.http.post(
                f"/v1/bulk-messages/{job['id']}/cancel", headers=tenant.headers
            )
            await wait_job(stack.http, other, job["id"])

    assert empty.status_code == 422 and "at least one" in empty.json()["detail"]
    assert too_many.status_code == 422 and "at most 3" in too_many.json()["detail"]
    assert placeholder.status_code == 422
    assert "{{ candidate.age }} is not a field" in placeholder.json()["detail"]
    assert foreign.status_code == 422 and theirs[0] in foreign.json()["detail"]
    assert injected_subject.status_code == 422
    assert queued == 0  # nothing was queued by the refused requests
    assert peek.status_code == 404 and stop.status_code == 404


async def test_values_are_inserted_safely(temporal_client, engine, tmp_path):
    with SmtpSink() as sink:
        async with running_stack(temporal_client, engine, tmp_path, **relay(sink)) as stack:
            tenant = stack.tenant()
            # Stored before validation existed, or imported: a name with a line break and HTML.
            ids = add_candidates(stack, tenant, 1, name="Eve\r\nBcc: evil@example.net <b>x</b>")
            job = await start_bulk(
                stack,
                tenant,
                ids,
                subject="Hi {{candidate.name}}",
                html="<p>Dear {{candidate.name}}</p>",
            )
            await wait_job(stack.http, tenant, job["id"])

    [got] = sink.received
    message = got.message
    assert len(got.rcpt_tos) == 1 and "evil@example.net" not in got.rcpt_tos[0]
    assert message["Bcc"] is None
    assert message["Subject"] == "Hi Eve Bcc: evil@example.net <b>x</b>"
    html = message.get_body(("html",)).get_content()
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "<b>x</b>" not in html


async def test_microsoft_mailbox_bulk_send_refreshes_once(
    temporal_client, engine, tmp_path, test_ca
):
    async with world(
        temporal_client, engine, tmp_path, test_ca, bulk_rate_microsoft_per_minute=600
    ) as w:
        tenant = w.stack.tenant()
        mailbox = f"jobs-{uuid.uuid4().hex[:6]}@contoso.example"
        await connected(w, tenant, "microsoft", mailbox)
        before = len(w.microsoft.token_requests)
        job = await start_bulk(w.stack, tenant, add_candidates(w.stack, tenant, 6))
        done = await wait_job(w.stack.http, tenant, job["id"])

    assert done["counts"]["sent"] == 6
    delivered = w.microsoft.deliveries
    assert len(delivered) == 6 and {s["address"] for s in delivered} == {mailbox}
    assert len(w.microsoft.token_requests) - before <= 1
    assert len(w.platform.received) == 0


@asynccontextmanager
async def api_only(client, engine, settings):
    app = create_app(settings, engine=engine, temporal_client=client)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        yield http


def spawn_worker(settings, database_url: str, target: str, log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "RECRUITMAIL_ENVIRONMENT": "test",
        "RECRUITMAIL_STATE_DIR": str(settings.state_dir),
        "RECRUITMAIL_DATABASE_URL": database_url,
        "RECRUITMAIL_TEMPORAL_ADDRESS": target,
        "RECRUITMAIL_TASK_QUEUE": settings.task_queue,
        "RECRUITMAIL_SECRET_KEYS": TEST_KEY,
        "RECRUITMAIL_PLATFORM_TRANSPORT": "smtp",
        "RECRUITMAIL_SMTP_RELAY_URL": settings.smtp_relay_url,
        "RECRUITMAIL_BULK_RATE_PLATFORM_PER_MINUTE": str(settings.bulk_rate_platform_per_minute),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "worker"],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )


async def test_worker_killed_mid_job_then_restarted_delivers_everything(
    temporal_client, engine, database_url, tmp_path
):
    total = 60
    with SmtpSink() as sink:
        settings = stack_settings(
            tmp_path,
            task_queue=f"test-{uuid.uuid4().hex[:10]}",
            **relay(sink, bulk_rate_platform_per_minute=600, bulk_batch_size=25),
            bulk_heartbeat_timeout="PT3S",
        )
        target = temporal_client.service_client.config.target_host
        async with api_only(temporal_client, engine, settings) as http:
            stack = Stack(settings, engine, temporal_client, http)
            tenant = stack.tenant()
            worker = spawn_worker(settings, database_url, target, tmp_path / "worker1.log")
            job = await start_bulk(stack, tenant, add_candidates(stack, tenant, total))
            try:

                async def received() -> int:
                    return len(sink.received)

                await eventually(
                    received,
                    lambda n: n >= 20,
                    timeout=60,
                    interval=0.05,
                    what=f"20 deliveries (worker log: {tmp_path / 'worker1.log'})",
                )
                worker.kill()  # SIGKILL: no cleanup, a send may be under way
                worker.wait()
                at_kill = len(sink.received)
                worker = spawn_worker(settings, database_url, target, tmp_path / "worker2.log")
                done = await wait_job(http, tenant, job["id"], timeout=120)
            finally:
                worker.kill()
                worker.wait()

    seen = Counter(message_ids(sink))
    duplicates = sum(n - 1 for n in seen.values())
    print(f"killed after {at_kill} deliveries; duplicates seen: {duplicates}")
    assert at_kill < total
    assert done["counts"]["sent"] == total
    assert len(seen) == total  # every message delivered
    # At most the sends in flight at the kill: one per batch running (3 batches of 25 here).
    assert duplicates <= 3


async def test_a_queued_job_without_a_run_is_started_by_the_sweeper(
    temporal_client, engine, tmp_path
):
    """The API died between committing the job and starting its run: the workers' sweep
    starts it (two sweeps at once start one run), and every message goes out once."""
    with SmtpSink() as sink:
        settings = relay(sink, send_sweep_interval=timedelta(0))
        async with running_stack(temporal_client, engine, tmp_path, **settings) as stack:
            tenant = stack.tenant()
            ids = add_candidates(stack, tenant, 12)
            with Session(engine, expire_on_commit=False) as session:
                admin = session.get(User, tenant.admin_id)
                body = BulkCreate(
                    candidate_ids=ids, subject="Hello", text="Dear {{candidate.name}}"
                )
                job = service.create_job(session, stack.settings, admin, body)  # no start
            swept = await asyncio.gather(
                resume_bulk_jobs(stack.client, stack.settings, engine),
                resume_bulk_jobs(stack.client, stack.settings, engine),
            )
            done = await wait_job(stack.http, tenant, str(job.id))
            after = await resume_bulk_jobs(stack.client, stack.settings, engine)
    assert sum(swept) == 1 and after == 0
    assert done["counts"]["sent"] == 12
    assert len(set(message_ids(sink))) == len(sink.received) == 12


async def test_a_greylisted_recipient_defers_alone_and_the_batch_flows_past_it(
    temporal_client, engine, tmp_path
):
    """100 messages through one relay session: one recipient greylisted (450 twice), one
    refused (550). The 98 others go at once; the 550 fails with its reason; the 450 waits on
    its own backoff, with its reason on its message, and is sent when the server relents."""
    with SmtpSink() as sink:
        async with running_stack(
            temporal_client, engine, tmp_path, **relay(sink, bulk_batch_size=100)
        ) as stack:
            tenant = stack.tenant()
            ids = add_candidates(stack, tenant, 100)
            with Session(engine) as session:
                grey, gone = (session.get(Candidate, uuid.UUID(i)).email for i in ids[10:12])
            sink.handler.rcpt_script[grey.lower()] = ["450 4.2.0 Greylisted, try again later"] * 2
            sink.handler.rcpt_script[gone.lower()] = ["550 5.1.1 No such user"]
            job = await start_bulk(stack, tenant, ids)
            first_pass = await eventually(
                lambda: stack.http.get(f"/v1/bulk-messages/{job['id']}", headers=tenant.headers),
                lambda r: r.json()["counts"]["sent"] + r.json()["counts"]["failed"] >= 99,
                what="the batch's first pass",
            )
            waiting = (
                await stack.http.get(f"/v1/candidates/{ids[10]}/messages", headers=tenant.headers)
            ).json()[0]
            done = await wait_job(stack.http, tenant, job["id"])
            failed = (
                await stack.http.get(f"/v1/candidates/{ids[11]}/messages", headers=tenant.headers)
            ).json()[0]
            sent_late = (
                await stack.http.get(f"/v1/candidates/{ids[10]}/messages", headers=tenant.headers)
            ).json()[0]
    counts = first_pass.json()["counts"]
    assert counts["sent"] == 98 and counts["failed"] == 1
    assert waiting["status"] == "queued" and "Greylisted" in waiting["error"]
    assert "Retrying after" in waiting["error"]
    assert done["counts"]["sent"] == 99 and done["counts"]["failed"] == 1
    assert failed["status"] == "failed" and "550 5.1.1 No such user" in failed["error"]
    assert sent_late["status"] == "sent" and sent_late["error"] is None
    assert sink.handler.rcpt_attempts[grey.lower()] == 3
    assert len(sink.deliveries) == 99
    # One session for the first pass, then one for each retry of the put-off recipient.
    assert sink.handler.sessions <= 3


async def test_a_bulk_send_carries_its_files_stored_once_and_a_put_off_recipient_gets_them(
    temporal_client, engine, tmp_path
):
    """A bulk send of 20 with an uploaded file and a template's default file: every recipient
    gets both; the job stores each file once (not a copy per recipient, and the messages'
    stored MIME holds none); a greylisted recipient gets them whole when it is tried again;
    the files are deleted when the job ends, their names and sizes kept on it."""
    pdf = os.urandom(300_000)
    with SmtpSink() as sink:
        async with running_stack(
            temporal_client, engine, tmp_path, **relay(sink, bulk_batch_size=20)
        ) as stack:
            tenant = stack.tenant()
            http = stack.http
            ids = add_candidates(stack, tenant, 20)
            with Session(engine) as session:
                grey = session.get(Candidate, uuid.UUID(ids[3])).email.lower()
            sink.handler.rcpt_script[grey] = ["450 4.2.0 Greylisted, try again later"]
            upload = await http.post(
                "/v1/attachments",
                files={"file": ("Brochure.pdf", pdf, "application/pdf")},
                headers=tenant.headers,
            )
            template = await http.post(
                "/v1/templates",
                json={
                    "name": "News",
                    "type": "other",
                    "variants": [{"language": "en", "subject": "News", "text": "Hello"}],
                    "attachments": [
                        {
                            "filename": "Terms.txt",
                            "content_type": "text/plain",
                            "content_base64": base64.b64encode(b"The terms.").decode(),
                        }
                    ],
                },
                headers=tenant.headers,
            )
            assert template.status_code == 201, template.text
            job = await start_bulk(
                stack,
                tenant,
                ids,
                subject=None,
                text=None,
                template_id=template.json()["id"],
                attachment_ids=[upload.json()["id"]],
            )
            with Session(engine) as session:
                stored = session.exec(
                    select(BulkFile).where(BulkFile.job_id == uuid.UUID(job["id"]))
                ).all()
                kept = [(f.filename, f.size) for f in stored]
            done = await wait_job(http, tenant, job["id"])
            with Session(engine) as session:
                mime_sizes = [
                    len(m.raw_mime or b"")
                    for m in session.exec(
                        select(Message).where(Message.bulk_job_id == uuid.UUID(job["id"]))
                    )
                ]
                left = session.exec(
                    select(BulkFile).where(BulkFile.job_id == uuid.UUID(job["id"]))
                ).all()
    assert done["counts"]["sent"] == 20
    assert sorted(kept) == [("Brochure.pdf", len(pdf)), ("Terms.txt", 10)]
    assert max(mime_sizes) < 10_000  # each stored message holds its words, not the files
    assert left == [] and [f["filename"] for f in done["files"]] == ["Terms.txt", "Brochure.pdf"]
    by_recipient: dict[str, list[bytes]] = {}
    for received in sink.deliveries:
        by_recipient.setdefault(received.rcpt_tos[0].lower(), []).append(received.raw)
    assert len(by_recipient) == 20
    for raws in by_recipient.values():
        message = message_from_bytes(raws[0], policy=policy.default)
        files = {p.get_filename(): p.get_payload(decode=True) for p in message.iter_attachments()}
        assert files == {"Brochure.pdf": pdf, "Terms.txt": b"The terms."}
        assert "Hello" in message.get_body(("plain",)).get_content()
    # The greylisted recipient's message, refused once before DATA, went once, whole.
    assert sink.handler.rcpt_attempts[grey] == 2 and len(by_recipient[grey]) == 1
