"""Inbound mail end to end: real SMTP into the receiver, a real worker, the API showing it."""

from __future__ import annotations

import asyncio
import base64
import ssl
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

import aiosmtplib
import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import create_engine, func
from sqlmodel import Session, col, select

from activities.inbound import InboundActivities
from api.runs import start_all_routing
from core.inbound import intake
from core.models import AuditEvent, Candidate, InboundRaw, Message, User, utcnow
from core.run_ids import receive_batch_workflow_id, receive_workflow_id
from core.search_attributes import COMPANY_ID, MAIL_STATUS
from tests import mail_samples as samples
from tests.fakes.dns import DnsServer
from tests.fakes.smtp import SmtpSink
from tests.helpers import LOAD_SLACK, Stack, Tenant, eventually, running_stack
from tests.test_inbound_parse import application, forward
from worker.inbound_smtp import InboundSmtpServer
from workflows.inbound import InboundMessagesWorkflow, InboundMessageWorkflow

SECRET = "inbound-test-secret-0123456789"


@dataclass
class Inbound:
    stack: Stack
    sink: SmtpSink  # the platform relay: everything we send lands here
    server: InboundSmtpServer
    port: int

    def hosted(self, tenant: Tenant) -> str:
        return self.stack.settings.hosted_address(tenant.company.slug)

    async def deliver(self, raw: bytes, to: str, mail_from: str = "sender@example.org") -> str:
        """Deliver over SMTP; return the server's answer to DATA."""
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=self.port, timeout=10, start_tls=False)
        async with smtp:
            await smtp.mail(mail_from)
            await smtp.rcpt(to)
            response = await smtp.data(raw)
        return response.message

    async def messages(self, tenant: Tenant, candidate_id: str) -> list[dict]:
        response = await self.stack.http.get(
            f"/v1/candidates/{candidate_id}/messages", headers=tenant.headers
        )
        assert response.status_code == 200, response.text
        return response.json()

    async def unassigned(self, tenant: Tenant) -> list[dict]:
        response = await self.stack.http.get("/v1/messages/unassigned", headers=tenant.headers)
        assert response.status_code == 200, response.text
        return response.json()

    async def wait_runs_ended(self, tenant: Tenant) -> None:
        """Wait for the receive-message run of every message stored for the company."""
        with Session(self.stack.engine) as session:
            runs = session.exec(
                select(InboundRaw.workflow_id).where(InboundRaw.company_id == tenant.company.id)
            ).all()
        for run in runs:
            assert run is not None
            await self.stack.client.get_workflow_handle(run).result()

    async def wait_routed(self, *tenants: Tenant, timeout: float = 30.0) -> None:
        """Wait until every message stored for these companies has been routed."""
        companies = [t.company.id for t in tenants]

        async def pending() -> int:
            with Session(self.stack.engine) as session:
                return session.exec(
                    select(func.count())
                    .select_from(InboundRaw)
                    .where(InboundRaw.state == "stored", col(InboundRaw.company_id).in_(companies))
                ).one()

        await eventually(pending, lambda n: n == 0, timeout=timeout, what="routing every message")


@asynccontextmanager
async def inbound_stack(temporal_client, engine, tmp_path, **overrides) -> AsyncIterator[Inbound]:
    with SmtpSink() as sink:
        settings = {
            "platform_transport": "smtp",
            "smtp_relay_url": f"smtp://127.0.0.1:{sink.port}",
            "inbound_smtp_port": 0,
            "inbound_secret": SECRET,
            **overrides,
        }
        async with running_stack(temporal_client, engine, tmp_path, **settings) as stack:
            server = InboundSmtpServer(stack.settings, stack.engine, stack.client)
            port = await server.start()
            try:
                yield Inbound(stack, sink, server, port)
            finally:
                await server.stop()


async def wait_for(check, timeout: float = 30.0):
    return await eventually(check, timeout=timeout)


async def test_replies_from_gmail_outlook_and_apple_mail_thread_to_the_candidate(
    temporal_client, engine, tmp_path
):
    async with inbound_stack(temporal_client, engine, tmp_path) as inbound:
        stack = inbound.stack
        tenant = stack.tenant()
        hosted = inbound.hosted(tenant)
        candidate = await stack.candidate(tenant)
        sent = await stack.send(tenant, candidate["id"], subject="Your application")
        sent = await stack.wait_for_status(tenant, sent["id"], {"sent"})
        ours = sent["message_id_header"]
        chain = " ".join(f"<old-{i}@example.org>" for i in range(25)) + f" {ours}"
        # Replies come from addresses we do not know: only the thread can route them.
        shapes = [
            samples.gmail_reply(
                sender="other1@example.com",
                to=hosted,
                in_reply_to=ours,
                references=chain,
                subject="Your application",
            ),
            samples.outlook_reply(
                sender="other2@example.de",
                to=hosted,
                in_reply_to="<old-3@example.org>",  # not ours: only References finds it
                references=chain,
                subject="Your application",
            ),
            samples.apple_reply(
                sender="other3@example.se", to=hosted, in_reply_to=ours, subject="Your application"
            ),
        ]
        for raw in shapes:
            answer = await inbound.deliver(raw, hosted)
            assert "stored" in answer
        await inbound.wait_routed(tenant)
        thread = await inbound.messages(tenant, candidate["id"])

    assert [m["direction"] for m in thread] == ["outbound", "inbound", "inbound", "inbound"]
    replies = thread[1:]
    assert [m["subject"] for m in replies] == [
        "Re: Your application",
        "AW: Your application",
        "SV: Your application",
    ]
    assert {m["match_reason"] for m in replies} == {"thread"}
    assert all(m["status"] == "received" and m["kind"] == "mail" for m in replies)
    assert replies[1]["from_name"] == "Jürgen Müller"
    # What each wrote, apart from the history their client quoted.
    assert [m["reply_text"] for m in replies] == [
        "Thanks, Tuesday works for me.",
        "Grüße, der Termin passt. € 50 Fahrtkosten?",
        "Tack! Jag kommer på tisdag.",
    ]
    assert replies[0]["quoted_text"].startswith("On Wed, 25 Nov 2026 at 17:40")
    assert replies[1]["quoted_text"].startswith("________________________________\nVon:")
    assert replies[2]["quoted_text"].startswith("> 25 nov. 2026 kl. 17:40 skrev")
    assert "Tuesday works" in replies[0]["reply_html_safe"]
    assert "come in on Tuesday" in replies[0]["html_safe"]
    assert "come in on Tuesday" not in replies[0]["reply_html_safe"]
    assert all(m["reply_text"] is None for m in thread[:1])  # ours: outbound
    # Nothing answered the replies: only our one message reached the relay.
    assert len(inbound.sink.received) == 1


async def test_sender_match_open_recent_and_old_closed_applications(
    temporal_client, engine, tmp_path
):
    async with inbound_stack(temporal_client, engine, tmp_path) as inbound:
        stack = inbound.stack
        tenant = stack.tenant()
        hosted = inbound.hosted(tenant)
        older = await stack.candidate(tenant, email="ann@example.com")
        newer = await stack.candidate(tenant, email="ANN@example.com")
        recent = await stack.candidate(tenant, email="bob@example.com")
        stale = await stack.candidate(tenant, email="cid@example.com")
        with Session(stack.engine) as session:
            for candidate_id, days in ((recent["id"], 3), (stale["id"], 30)):
                row = session.get(Candidate, uuid.UUID(candidate_id))
                row.application_status = "closed"
                row.closed_at = utcnow() - timedelta(days=days)
                session.add(row)
            session.commit()
        for sender in ("Ann@Example.com", "bob@example.com", "cid@example.com"):
            await inbound.deliver(samples.plain_mail(sender=sender, to=hosted), hosted)
        await inbound.wait_routed(tenant)
        ann_newer = await inbound.messages(tenant, newer["id"])
        ann_older = await inbound.messages(tenant, older["id"])
        bob = await inbound.messages(tenant, recent["id"])
        cid = await inbound.messages(tenant, stale["id"])
        unassigned = await inbound.unassigned(tenant)

    assert [m["match_reason"] for m in ann_newer] == ["sender"]  # the most recent application
    assert ann_older == []
    assert [m["match_reason"] for m in bob] == ["sender"]  # closed 3 days ago still counts
    assert cid == []  # closed 30 days ago does not
    assert [m["from_address"] for m in unassigned] == ["cid@example.com"]
    assert unassigned[0]["match_reason"] == "none"
    assert "no candidate with an open" in unassigned[0]["match_detail"]


async def test_assign_with_remember_address_routes_the_next_mail(temporal_client, engine, tmp_path):
    async with inbound_stack(temporal_client, engine, tmp_path) as inbound:
        stack = inbound.stack
        tenant = stack.tenant()
        hosted = inbound.hosted(tenant)
        candidate = await stack.candidate(tenant, email="grace@work.example")
        await inbound.deliver(samples.plain_mail(sender="grace@home.example", to=hosted), hosted)
        await inbound.wait_routed(tenant)
        [waiting] = await inbound.unassigned(tenant)

        other = stack.tenant()
        foreign = await stack.http.post(
            f"/v1/messages/{waiting['id']}/assign",
            json={"candidate_id": candidate["id"]},
            headers=other.headers,
        )
        assigned = await stack.http.post(
            f"/v1/messages/{waiting['id']}/assign",
            json={"candidate_id": candidate["id"], "remember_address": True},
            headers=tenant.headers,
        )
        await inbound.deliver(
            samples.plain_mail(sender="grace@home.example", to=hosted, subject="One more thing"),
            hosted,
        )
        await inbound.wait_routed(tenant)
        thread = await inbound.messages(tenant, candidate["id"])
        left = await inbound.unassigned(tenant)

    assert foreign.status_code == 404
    assert assigned.status_code == 200, assigned.text
    assert assigned.json()["match_reason"] == "manual"
    assert [(m["subject"], m["match_reason"]) for m in thread] == [
        ("Question about the role", "manual"),
        ("One more thing", "sender"),
    ]
    assert left == []


async def test_an_emailed_application_becomes_a_candidate(temporal_client, engine, tmp_path):
    async with inbound_stack(temporal_client, engine, tmp_path) as inbound:
        stack = inbound.stack
        tenant = stack.tenant()
        hosted = inbound.hosted(tenant)
        await stack.candidate(tenant, email="taken@example.org")
        for sender, subject in (
            ('"Ada Lovelace" <Ada@Home.Example>', "Application: engineer"),
            ("someone@example.net", "Application: again"),
        ):
            await inbound.deliver(
                samples.plain_mail(sender=sender, to=hosted, subject=subject), hosted
            )
        await inbound.wait_routed(tenant)
        waiting = {m["subject"]: m for m in await inbound.unassigned(tenant)}
        application = waiting["Application: engineer"]
        url = f"/v1/messages/{application['id']}/candidate"

        foreign = await stack.http.post(url, headers=stack.tenant().headers)
        created = await stack.http.post(url, headers=tenant.headers)
        twice = await stack.http.post(url, headers=tenant.headers)
        duplicate = await stack.http.post(
            f"/v1/messages/{waiting['Application: again']['id']}/candidate",
            json={"email": "Taken@example.org"},
            headers=tenant.headers,
        )
        await inbound.deliver(
            samples.plain_mail(sender="ada@home.example", to=hosted, subject="Follow-up"), hosted
        )
        await inbound.wait_routed(tenant)
        candidate = created.json()
        thread = await inbound.messages(tenant, candidate["id"])
        left = await inbound.unassigned(tenant)
    with Session(engine) as session:
        audited = session.exec(
            select(AuditEvent).where(AuditEvent.action == "candidate.create_from_message")
        ).all()

    assert foreign.status_code == 404
    assert created.status_code == 201, created.text
    assert (candidate["name"], candidate["email"]) == ("Ada Lovelace", "Ada@home.example")
    assert twice.status_code == 409
    assert candidate["id"] in twice.json()["detail"]
    assert duplicate.status_code == 409
    assert "Taken@example.org is already the address of candidate" in duplicate.json()["detail"]
    assert [(m["subject"], m["match_reason"]) for m in thread] == [
        ("Application: engineer", "manual"),
        ("Follow-up", "sender"),
    ]
    assert [m["subject"] for m in left] == ["Application: again"]
    assert [a.target for a in audited] == [f"candidate:{candidate['id']}"]


async def test_unknown_recipient_gets_550_and_nothing_is_stored(temporal_client, engine, tmp_path):
    async with inbound_stack(temporal_client, engine, tmp_path) as inbound:
        raw = samples.plain_mail(sender="a@example.org", to="nobody-jobs@jobs.test.example")
        with Session(engine) as session:
            before = session.exec(select(func.count()).select_from(InboundRaw)).one()
        for address in ("nobody-jobs@jobs.test.example", "someone@elsewhere.example"):
            with pytest.raises(aiosmtplib.SMTPRecipientRefused) as refused:
                await inbound.deliver(raw, address)
            assert refused.value.code == 550
            assert "no such recruiting mailbox" in refused.value.message
        with Session(engine) as session:
            after = session.exec(select(func.count()).select_from(InboundRaw)).one()
    assert after == before


async def test_database_refusing_the_write_answers_451_then_a_retry_is_stored(
    temporal_client, engine, database_url, tmp_path
):
    async with inbound_stack(temporal_client, engine, tmp_path) as inbound:
        tenant = inbound.stack.tenant()
        hosted = inbound.hosted(tenant)
        raw = samples.plain_mail(
            sender="a@example.org", to=hosted, message_id=f"<retry-{uuid.uuid4()}@example.org>"
        )
        # A database that answers reads but refuses every write, as a full or failed-over one.
        read_only = _read_only_engine(database_url)
        inbound.server.handler.engine = read_only
        try:
            with pytest.raises(aiosmtplib.SMTPDataError) as refused:
                await inbound.deliver(raw, hosted)
        finally:
            inbound.server.handler.engine = engine
            read_only.dispose()
        assert refused.value.code == 451
        with Session(engine) as session:
            assert _stored_for(session, tenant) == 0
        await inbound.deliver(raw, hosted)  # the sending server retries later
        await inbound.wait_routed(tenant)
        with Session(engine) as session:
            assert _stored_for(session, tenant) == 1


def _stored_for(session: Session, tenant: Tenant) -> int:
    return session.exec(
        select(func.count())
        .select_from(InboundRaw)
        .where(InboundRaw.company_id == tenant.company.id)
    ).one()


def _read_only_engine(url: str):
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1]
        return create_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
    url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(url, connect_args={"options": "-c default_transaction_read_only=on"})


async def test_oversized_message_gets_552(temporal_client, engine, tmp_path):
    async with inbound_stack(
        temporal_client, engine, tmp_path, inbound_max_message_bytes=10_000
    ) as inbound:
        tenant = inbound.stack.tenant()
        hosted = inbound.hosted(tenant)
        raw = samples.plain_mail(sender="a@example.org", to=hosted, body=("x" * 70 + "\n") * 300)
        with pytest.raises(aiosmtplib.SMTPResponseException) as refused:
            await inbound.deliver(raw, hosted)
        with Session(engine) as session:
            stored = _stored_for(session, tenant)
    assert refused.value.code == 552
    assert stored == 0


async def test_tenant_isolation_and_deduplication(temporal_client, engine, tmp_path):
    async with inbound_stack(temporal_client, engine, tmp_path) as inbound:
        stack = inbound.stack
        a, b = stack.tenant(name="A Corp"), stack.tenant(name="B Corp")
        a_candidate = await stack.candidate(a, email="same@example.com")
        b_candidate = await stack.candidate(b, email="same@example.com")
        b_sent = await stack.send(b, b_candidate["id"])
        b_sent = await stack.wait_for_status(b, b_sent["id"], {"sent"})
        # Addressed to A, replying to B's message, from the shared address: A's candidate only.
        raw = samples.gmail_reply(
            sender="someone@example.net",
            to=inbound.hosted(a),
            in_reply_to=b_sent["message_id_header"],
            references=b_sent["message_id_header"],
            subject="Hello",
        )
        raw = raw.replace(b"someone@example.net", b"same@example.com")
        await inbound.deliver(raw, inbound.hosted(a))
        await inbound.deliver(raw, inbound.hosted(a))  # a redirect plus a copy
        await inbound.wait_routed(a)
        a_thread = await inbound.messages(a, a_candidate["id"])
        b_thread = await inbound.messages(b, b_candidate["id"])
        with Session(engine) as session:
            states = session.exec(
                select(InboundRaw.state).where(InboundRaw.company_id == a.company.id)
            ).all()

    assert [(m["direction"], m["match_reason"]) for m in a_thread] == [("inbound", "sender")]
    assert [m["direction"] for m in b_thread] == ["outbound"]
    assert sorted(states) == ["duplicate", "routed"]


async def test_bounce_marks_the_message_and_the_address_auto_reply_is_flagged(
    temporal_client, engine, tmp_path
):
    async with inbound_stack(temporal_client, engine, tmp_path) as inbound:
        stack = inbound.stack
        tenant = stack.tenant()
        hosted = inbound.hosted(tenant)
        candidate = await stack.candidate(tenant)
        sent = await stack.send(tenant, candidate["id"])
        sent = await stack.wait_for_status(tenant, sent["id"], {"sent"})
        await inbound.deliver(
            samples.out_of_office(
                sender=candidate["email"], to=hosted, in_reply_to=sent["message_id_header"]
            ),
            hosted,
        )
        await inbound.deliver(
            samples.dsn_bounce(
                to=hosted,
                failed_recipient=candidate["email"],
                original_message_id=sent["message_id_header"],
            ),
            hosted,
            mail_from="",
        )
        await inbound.wait_routed(tenant)
        thread = await inbound.messages(tenant, candidate["id"])
        flagged = (
            await stack.http.get(f"/v1/candidates/{candidate['id']}", headers=tenant.headers)
        ).json()
        # Every routing run has ended, so nothing (no answer to automated mail) follows.
        await inbound.wait_runs_ended(tenant)

    outbound, ooo, bounce = thread
    assert outbound["status"] == "bounced"
    assert "User unknown" in outbound["error"]
    assert candidate["email"] in outbound["error"]
    assert (ooo["kind"], ooo["match_reason"]) == ("auto_reply", "thread")
    assert (bounce["kind"], bounce["match_reason"]) == ("bounce", "thread")
    assert flagged["email_bounced_at"] is not None
    assert "5.1.1" in flagged["email_bounce_detail"]
    assert len(inbound.sink.received) == 1  # our message; no reply to automated mail


async def test_charsets_malformed_mime_and_attachments_are_shown(temporal_client, engine, tmp_path):
    async with inbound_stack(temporal_client, engine, tmp_path) as inbound:
        stack = inbound.stack
        tenant = stack.tenant()
        hosted = inbound.hosted(tenant)
        for raw in (
            samples.iso2022jp_mail(sender="taro@example.jp", to=hosted),
            samples.windows1252_mail(sender="renee@example.de", to=hosted),
            samples.malformed_mail(sender="broken@example.net", to=hosted),
        ):
            await inbound.deliver(raw, hosted)
        await inbound.wait_routed(tenant)
        waiting = {m["from_address"]: m for m in await inbound.unassigned(tenant)}
        cv = waiting["renee@example.de"]["attachments"][0]
        download = await stack.http.get(
            f"/v1/messages/{waiting['renee@example.de']['id']}/attachments/{cv['id']}",
            headers=tenant.headers,
        )
        other = stack.tenant()
        foreign = await stack.http.get(
            f"/v1/messages/{waiting['renee@example.de']['id']}/attachments/{cv['id']}",
            headers=other.headers,
        )

    assert waiting["taro@example.jp"]["subject"] == "面接の件"
    assert waiting["taro@example.jp"]["from_name"] == "山田太郎"
    assert "応募ありがとうございます" in waiting["taro@example.jp"]["text"]
    assert waiting["renee@example.de"]["text"].strip() == samples.CP1252_TEXT
    assert "Hall" in waiting["broken@example.net"]["text"]
    assert "defects" in waiting["broken@example.net"]["match_detail"]
    assert (cv["filename"], cv["content_type"]) == ("Lebenslauf Rénée.pdf", "application/pdf")
    assert download.status_code == 200
    assert download.content.startswith(b"%PDF-1.4") and cv["size"] == len(download.content)
    assert download.headers["content-disposition"].startswith("attachment;")
    assert download.headers["x-content-type-options"] == "nosniff"
    assert foreign.status_code == 404


async def test_http_raw_and_mailjet_webhooks_need_the_secret(temporal_client, engine, tmp_path):
    async with inbound_stack(temporal_client, engine, tmp_path) as inbound:
        stack = inbound.stack
        tenant = stack.tenant()
        hosted = inbound.hosted(tenant)
        candidate = await stack.candidate(tenant, email="hedy@example.com")
        raw = samples.plain_mail(sender="hedy@example.com", to=hosted, subject="via HTTP")
        no_secret = await stack.http.post("/inbound/raw", content=raw)
        wrong = await stack.http.post(
            "/inbound/raw", content=raw, headers={"Authorization": "Bearer nope"}
        )
        nobody = await stack.http.post(
            "/inbound/raw",
            content=samples.plain_mail(sender="x@example.com", to="nobody@nowhere.example"),
            headers={"Authorization": f"Bearer {SECRET}"},
        )
        accepted = await stack.http.post(
            "/inbound/raw",
            content=raw,
            headers={"Authorization": f"Bearer {SECRET}", "Content-Type": "message/rfc822"},
        )
        basic = base64.b64encode(f"mailjet:{SECRET}".encode()).decode()
        post = {
            "Sender": "hedy@example.com",
            "Recipient": hosted,
            "From": "Hedy <hedy@example.com>",
            "Subject": "via Mailjet",
            "Headers": {"Message-ID": "<mj-hedy@example.com>", "Subject": "via Mailjet"},
            "Parts": [],
            "Text-part": "Parsed by Mailjet.",
        }
        bad_post = await stack.http.post(
            "/inbound/mailjet", json={"nope": 1}, headers={"Authorization": f"Basic {basic}"}
        )
        mailjet = await stack.http.post(
            "/inbound/mailjet", json=post, headers={"Authorization": f"Basic {basic}"}
        )
        await inbound.wait_routed(tenant)
        thread = await inbound.messages(tenant, candidate["id"])

    assert no_secret.status_code == 401 and wrong.status_code == 401
    assert "inbound secret" in wrong.json()["detail"]
    assert nobody.status_code == 422 and "No recipient" in nobody.json()["detail"]
    assert accepted.status_code == 202, accepted.text
    assert bad_post.status_code == 422 and "Headers" in bad_post.json()["detail"]
    assert mailjet.status_code == 200, mailjet.text
    assert [(m["subject"], m["match_reason"]) for m in thread] == [
        ("via HTTP", "sender"),
        ("via Mailjet", "sender"),
    ]
    assert thread[1]["text"].strip() == "Parsed by Mailjet."


async def test_stored_mail_whose_routing_did_not_start_is_swept(temporal_client, engine, tmp_path):
    async with inbound_stack(
        temporal_client, engine, tmp_path, inbound_sweep_interval=timedelta(0)
    ) as inbound:
        tenant = inbound.stack.tenant()
        hosted = inbound.hosted(tenant)
        # As if Temporal had been down when the receiver stored it: stored, never started.
        [stored] = intake.store_inbound(
            engine,
            raw=samples.plain_mail(sender="late@example.org", to=hosted),
            mail_from="late@example.org",
            recipients={hosted: tenant.company.id},
            channel="smtp",
        )
        started = await inbound.server.sweep_once()
        await inbound.wait_routed(tenant)
        with Session(engine) as session:
            row = session.get(InboundRaw, stored.inbound_id)
            message = session.get(Message, row.message_id)
    assert started >= 1
    assert row.state == "routed"
    assert message.from_address == "late@example.org" and message.candidate_id is None


async def test_receiver_offers_starttls_with_a_certificate(
    temporal_client, engine, tmp_path, test_ca
):
    cert, key = test_ca.issue("inbound", ["127.0.0.1", "localhost"])
    async with inbound_stack(
        temporal_client, engine, tmp_path, inbound_tls_cert=cert, inbound_tls_key=key
    ) as inbound:
        tenant = inbound.stack.tenant()
        hosted = inbound.hosted(tenant)
        smtp = aiosmtplib.SMTP(
            hostname="127.0.0.1",
            port=inbound.port,
            start_tls=True,  # fails unless the receiver offers STARTTLS
            tls_context=ssl.create_default_context(cafile=str(test_ca.ca_pem)),
            timeout=10,
        )
        async with smtp:
            encrypted = smtp.get_transport_info("sslcontext") is not None
            await smtp.sendmail(
                "a@example.org", [hosted], samples.plain_mail(sender="a@example.org", to=hosted)
            )
        await inbound.wait_routed(tenant)
        [waiting] = await inbound.unassigned(tenant)

    assert encrypted
    assert waiting["from_address"] == "a@example.org"


async def test_a_line_over_998_octets_is_accepted_and_stored_byte_for_byte(
    temporal_client, engine, tmp_path
):
    """Outlook, HTML mail and long encoded words produce such lines; MTAs accept them."""
    async with inbound_stack(temporal_client, engine, tmp_path) as inbound:
        tenant = inbound.stack.tenant()
        long_line = b"<p>" + b"x" * 5000 + b"</p>"
        raw = (
            b"From: Grace <grace@example.org>\r\nTo: " + inbound.hosted(tenant).encode()
            + b"\r\nSubject: Long line\r\nMessage-ID: <long-" + uuid.uuid4().hex.encode()
            + b"@example.org>\r\nContent-Type: text/html\r\n\r\n" + long_line + b"\r\n"
        )  # fmt: skip
        answer = await inbound.deliver(raw, inbound.hosted(tenant))
        await inbound.wait_routed(tenant)
        with Session(engine) as session:
            [stored] = session.exec(
                select(InboundRaw).where(InboundRaw.company_id == tenant.company.id)
            ).all()
    assert "Message stored" in answer, answer
    assert stored.raw == raw


async def _converse(port: int, lines: list[bytes]) -> list[bytes]:
    """Speak SMTP byte for byte (no client library normalising anything); return each answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answers = []

    async def answer() -> bytes:
        parts = []
        while True:
            line = await asyncio.wait_for(reader.readline(), 10)
            parts.append(line)
            if line[3:4] != b"-":
                return b"".join(parts)

    answers.append(await answer())
    for line in lines:
        writer.write(line)
        await writer.drain()
        answers.append(await answer())
    writer.close()
    return answers


async def test_bare_lf_8bit_and_internationalised_mail_is_accepted(
    temporal_client, engine, tmp_path
):
    """What established MTAs accept: bare LF line endings, 8-bit bodies, SMTPUTF8 addresses."""
    async with inbound_stack(temporal_client, engine, tmp_path) as inbound:
        tenant = inbound.stack.tenant()
        hosted = inbound.hosted(tenant).encode()
        body = (
            "From: José Müller <josé@bücher.example>\nTo: ".encode() + hosted
            + "\nSubject: Bewerbung für die Stelle\nMessage-ID: <lf-".encode()
            + uuid.uuid4().hex.encode() + b"@example.org>\nMIME-Version: 1.0\n"
            + b"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n"
            + "Grüße aus Köln\n".encode()
        )  # fmt: skip
        answers = await _converse(
            inbound.port,
            [
                b"EHLO client.example\r\n",
                "MAIL FROM:<josé@bücher.example> BODY=8BITMIME SMTPUTF8\r\n".encode(),
                b"RCPT TO:<" + hosted + b">\r\n",
                b"DATA\r\n",
                body + b"\r\n.\r\n",
                b"QUIT\r\n",
            ],
        )
        await inbound.wait_routed(tenant)
        [waiting] = await inbound.unassigned(tenant)
    ehlo = answers[1].decode()
    assert "8BITMIME" in ehlo and "SMTPUTF8" in ehlo
    assert [a[:3] for a in answers[2:6]] == [b"250", b"250", b"354", b"250"], answers
    assert waiting["subject"] == "Bewerbung für die Stelle"
    assert waiting["from_address"] == "josé@bücher.example"
    assert waiting["from_name"] == "José Müller"


async def test_a_hundred_recipients_are_accepted_and_the_next_is_deferred(
    temporal_client, engine, tmp_path
):
    async with inbound_stack(temporal_client, engine, tmp_path) as inbound:
        tenants = [inbound.stack.tenant() for _ in range(101)]
        rcpts = [b"RCPT TO:<" + inbound.hosted(t).encode() + b">\r\n" for t in tenants]
        answers = await _converse(
            inbound.port,
            [b"EHLO client.example\r\n", b"MAIL FROM:<a@example.org>\r\n", *rcpts, b"QUIT\r\n"],
        )
    codes = [a[:3] for a in answers[3:-1]]
    assert codes[:100] == [b"250"] * 100
    assert codes[100] == b"452", answers[-2]
    assert b"too many recipients" in answers[-2].lower()


def _colleague_forward(colleague: str, to: str, original: str, subject: str) -> bytes:
    """Gmail's inline forward block, as a recruiter's client writes it."""
    return samples.plain_mail(
        sender=f"Bob Recruiter <{colleague}>",
        to=to,
        subject=f"Fwd: {subject}",
        body=(
            "Look at this one.\n\n---------- Forwarded message ---------\n"
            f"From: {original}\nDate: Mon, 23 Nov 2026 at 10:00\n"
            f"Subject: {subject}\nTo: {colleague}\n"
            "\nHello, is the position still open?\n"
        ),
    )


async def test_a_colleagues_forward_routes_by_the_original_sender(
    temporal_client, engine, tmp_path
):
    async with inbound_stack(temporal_client, engine, tmp_path) as inbound:
        stack = inbound.stack
        tenant = stack.tenant()
        hosted = inbound.hosted(tenant)
        with Session(engine) as session:
            colleague = session.get(User, tenant.admin_id).email
        candidate = await stack.candidate(tenant, email="grace@home.example")
        for original, subject in (
            ("Grace Hopper <grace@home.example>", "Question"),
            ("Ada Lovelace <ada@home.example>", "Application"),
        ):
            await inbound.deliver(_colleague_forward(colleague, hosted, original, subject), hosted)
        # Forwarded as an attachment, with her CV inside.
        attached = application(b"%PDF-1.4 Grace's CV", sender="Grace Hopper <grace@home.example>")
        await inbound.deliver(
            forward(attached, "message/rfc822", "attachment", colleague=colleague, to=hosted),
            hosted,
        )
        # Someone outside the company forwarding is routed by their own address, as before.
        await inbound.deliver(
            _colleague_forward("stranger@else.example", hosted, "grace@home.example", "Other"),
            hosted,
        )
        await inbound.wait_routed(tenant)
        thread = {m["subject"]: m for m in await inbound.messages(tenant, candidate["id"])}
        unassigned = {m["subject"]: m for m in await inbound.unassigned(tenant)}
        created = await stack.http.post(
            f"/v1/messages/{unassigned['Fwd: Application']['id']}/candidate",
            headers=tenant.headers,
        )

    assert set(thread) == {"Fwd: Question", "Fw: Application"}
    routed, attached_forward = thread["Fwd: Question"], thread["Fw: Application"]
    assert routed["match_reason"] == "sender"
    assert routed["match_detail"].startswith(
        f"forwarded by {colleague}; original sender grace@home.example"
    )
    assert routed["forwarded_from"] == "grace@home.example"
    assert attached_forward["forwarded_from"] == "grace@home.example"
    assert sorted(
        (a["filename"], a["original_sender"]) for a in attached_forward["attachments"]
    ) == [
        ("Application engineer.eml", "grace@home.example"),
        ("cv.pdf", None),
    ]
    assert unassigned["Fwd: Other"]["forwarded_from"] is None
    assert "original sender ada@home.example" in unassigned["Fwd: Application"]["match_detail"]
    assert created.status_code == 201, created.text
    assert (created.json()["name"], created.json()["email"]) == ("Ada Lovelace", "ada@home.example")


async def test_a_burst_is_routed_in_one_run_and_a_message_it_cannot_route_gets_its_own(
    temporal_client, engine, tmp_path, monkeypatch
):
    """Mail stored while a start was under way is routed by one receive-messages run, each
    message in its own transaction; one that fails there is routed by a receive-message run
    of its own, which the batch starts."""
    failed_once: set[uuid.UUID] = set()
    route = InboundActivities.route

    def route_failing_once(self, inbound_id, grace, *args):  # the database hiccups once
        if inbound_id == unlucky and inbound_id not in failed_once:
            failed_once.add(inbound_id)
            raise OSError("disk I/O error")
        return route(self, inbound_id, grace, *args)

    monkeypatch.setattr(InboundActivities, "route", route_failing_once)
    async with inbound_stack(temporal_client, engine, tmp_path) as inbound:
        tenant = inbound.stack.tenant()
        hosted = inbound.hosted(tenant)
        candidate = await inbound.stack.candidate(tenant, email="burst@example.org")
        senders = ["burst@example.org", "stranger@example.org", "other@example.org"]
        stored = intake.store_many(
            engine,
            [
                intake.Incoming(
                    samples.plain_mail(sender=sender, to=hosted),
                    sender,
                    {hosted: tenant.company.id},
                    "smtp",
                )
                for sender in senders
            ],
        )
        items = [rows[0] for rows in stored]
        unlucky = items[2].inbound_id
        await start_all_routing(
            inbound.stack.client,
            items,
            task_queue=inbound.stack.settings.task_queue,
            closed_application_grace=timedelta(days=14),
            together=True,
        )
        batch = inbound.stack.client.get_workflow_handle_for(
            InboundMessagesWorkflow.run, receive_batch_workflow_id(str(items[0].inbound_id))
        )
        results = await batch.result()
        await inbound.wait_routed(tenant)
        alone = await inbound.stack.client.get_workflow_handle_for(
            InboundMessageWorkflow.run, receive_workflow_id(str(unlucky))
        ).result()
        description = await batch.describe()
        with Session(engine) as session:
            rows = [session.get(InboundRaw, item.inbound_id) for item in items]
            messages = [session.get(Message, row.message_id) for row in rows]

    assert [r and r.state for r in results] == ["routed", "routed", None]
    assert results[0].candidate_id == candidate["id"] and results[1].candidate_id is None
    assert alone.state == "routed" and alone.candidate_id is None
    assert [row.state for row in rows] == ["routed"] * 3
    # Each row names the run that routed it: the batch, or the run of its own.
    assert [row.workflow_id for row in rows] == [
        batch.id,
        batch.id,
        receive_workflow_id(str(unlucky)),
    ]
    assert [m.from_address for m in messages] == senders
    assert str(messages[0].candidate_id) == candidate["id"] and messages[2].candidate_id is None
    assert description.typed_search_attributes[MAIL_STATUS] == "stored"  # one was left over
    assert description.typed_search_attributes[COMPANY_ID] == str(tenant.company.id)


async def test_a_burst_over_many_sessions_is_stored_and_routed_whole(
    temporal_client, engine, tmp_path
):
    async with inbound_stack(temporal_client, engine, tmp_path) as inbound:
        tenant = inbound.stack.tenant()
        hosted = inbound.hosted(tenant)
        answers = await asyncio.gather(
            *(
                inbound.deliver(samples.plain_mail(sender=f"s{i}@example.org", to=hosted), hosted)
                for i in range(16)
            )
        )
        await inbound.wait_routed(tenant)
        await inbound.wait_runs_ended(tenant)
        with Session(engine) as session:
            rows = session.exec(
                select(InboundRaw).where(InboundRaw.company_id == tenant.company.id)
            ).all()
    stored_ids = {answer.rsplit(" ", 1)[-1] for answer in answers}  # "… stored as {id}"
    assert len(stored_ids) == 16 and {str(row.id) for row in rows} == stored_ids
    assert all(row.state == "routed" and row.message_id for row in rows)


# -- who really sent it ----------------------------------------------------------------------


def _dkim_key() -> tuple[bytes, str]:
    """An RSA key for signing (PEM) and its DKIM DNS record."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, f"v=DKIM1; k=rsa; p={base64.b64encode(public).decode()}"


async def test_a_spoofed_from_under_a_reject_policy_is_not_routed_by_its_sender(
    temporal_client, engine, tmp_path
):
    """bank.example publishes p=reject and signs its mail. A message written anywhere with
    From: the candidate's bank.example address fails DMARC and lands in Unassigned, marked
    "sender not verified"; the same sender's signed mail routes to the candidate, and a
    domain without a policy routes as before."""
    private, record = _dkim_key()
    with DnsServer() as dns:
        dns.txt("_dmarc.bank.example", "v=DMARC1; p=reject; adkim=r; aspf=r")
        dns.txt("bank.example", "v=spf1 ip4:192.0.2.0/24 -all")
        dns.txt("mail._domainkey.bank.example", record)
        dns.txt("_dmarc.open.example", "v=DMARC1; p=none")
        async with inbound_stack(
            temporal_client, engine, tmp_path, dns_nameservers=dns.nameservers
        ) as inbound:
            tenant = inbound.stack.tenant()
            hosted = inbound.hosted(tenant)
            banker = await inbound.stack.candidate(tenant, email="ceo@bank.example")
            other = await inbound.stack.candidate(tenant, email="ann@open.example")
            spoofed = samples.plain_mail(sender="ceo@bank.example", to=hosted, subject="Spoof")
            body = samples.plain_mail(sender="ceo@bank.example", to=hosted, subject="Signed")
            signed = (
                dkim.sign(
                    body,
                    b"mail",
                    b"bank.example",
                    private,
                    include_headers=[b"from", b"to", b"subject", b"message-id"],
                )
                + body
            )
            await inbound.deliver(spoofed, hosted, mail_from="ceo@bank.example")
            await inbound.deliver(signed, hosted, mail_from="bounce@relay.example")
            await inbound.deliver(
                samples.plain_mail(sender="ann@open.example", to=hosted, subject="Open"),
                hosted,
                mail_from="ann@open.example",
            )
            await inbound.wait_routed(tenant)
            unassigned = await inbound.unassigned(tenant)
            on_bankers_tab = await inbound.messages(tenant, banker["id"])
            on_anns_tab = await inbound.messages(tenant, other["id"])
    [spoof] = [m for m in unassigned if m["subject"] == "Spoof"]
    assert spoof["candidate_id"] is None and spoof["sender_verified"] is False
    assert "sender not verified" in spoof["match_detail"]
    assert spoof["sender_auth"].startswith("dmarc=fail (p=reject) spf=fail")
    [real] = on_bankers_tab
    assert real["subject"] == "Signed" and real["match_reason"] == "sender"
    assert real["sender_verified"] is True and "dkim=pass (bank.example)" in real["sender_auth"]
    [open_mail] = on_anns_tab
    assert open_mail["sender_verified"] is False and open_mail["match_reason"] == "sender"
    assert "p=none" in open_mail["sender_auth"]


async def test_one_hostile_mail_neither_stalls_routing_nor_slows_a_send(
    temporal_client, engine, tmp_path
):
    """The probe's two mails through the whole path: 2 MB of attribution-shaped lines (it took
    34 s to parse and held up everyone's sends), and 60,000 nested <div> (every read took 11-17
    s). The first is routed in seconds while another company's send goes out in under a
    second; the second is read, alone and in the Unassigned list, in under a second."""
    attributions = "\r\n".join("a" * 980 + " wrote:" for _ in range(2000))
    deep = "<div>" * 60_000 + "deep" + "</div>" * 60_000
    async with inbound_stack(temporal_client, engine, tmp_path) as inbound:
        tenant, other = inbound.stack.tenant(), inbound.stack.tenant("Other")
        hosted = inbound.hosted(tenant)
        slow = samples.plain_mail(sender="x@example.org", to=hosted, subject="Long", body="BODY")
        slow = slow.replace(b"BODY", attributions.encode(), 1)
        delivering = asyncio.ensure_future(inbound.deliver(slow, hosted))
        candidate = await inbound.stack.candidate(other)
        started = asyncio.get_running_loop().time()
        queued = await inbound.stack.send(other, candidate["id"])
        sent = await inbound.stack.wait_for_status(other, queued["id"], {"sent"})
        send_took = asyncio.get_running_loop().time() - started
        await delivering
        await inbound.wait_routed(tenant, timeout=20)
        html = samples.plain_mail(sender="y@example.org", to=hosted, subject="Deep", body="BODY")
        html = html.replace(b"Content-Type: text/plain", b"Content-Type: text/html")
        await inbound.deliver(html.replace(b"BODY", deep.encode(), 1), hosted)
        await inbound.wait_routed(tenant)
        started = asyncio.get_running_loop().time()
        listed = await inbound.unassigned(tenant)
        deep_one = next(m for m in listed if m["subject"] == "Deep")
        one = await inbound.stack.http.get(f"/v1/messages/{deep_one['id']}", headers=tenant.headers)
        read_took = asyncio.get_running_loop().time() - started
    assert sent["status"] == "sent" and send_took < 1.0 * LOAD_SLACK, send_took
    long_one = next(m for m in listed if m["subject"] == "Long")
    assert long_one["text"].startswith("a" * 980 + " wrote:")  # the first million characters
    assert read_took < 1.0 * LOAD_SLACK, read_took
    assert one.json()["html_safe"] is None and "nested more than" in one.json()["html_note"]
    assert one.json()["text"] == "deep"


# -- the reply-to token ------------------------------------------------------------------------


async def test_a_reply_to_the_conversation_address_routes_without_any_thread_header(
    temporal_client, engine, tmp_path
):
    """Mail from the hosted address carries Reply-To: a per-conversation token address. A reply
    to it routes to its candidate even when the client dropped In-Reply-To and References and
    the candidate writes from another address; a token of another company's, at this company's
    hosted address, is no token at all."""
    async with inbound_stack(temporal_client, engine, tmp_path) as inbound:
        acme, rival = inbound.stack.tenant(), inbound.stack.tenant("Rival")
        grace = await inbound.stack.candidate(acme, email="grace@example.com")
        theirs = await inbound.stack.candidate(rival, email="ann@example.com")
        first = await inbound.stack.send(acme, grace["id"])
        second = await inbound.stack.send(acme, grace["id"], subject="Second")
        other = await inbound.stack.send(rival, theirs["id"])
        for tenant, message in ((acme, first), (acme, second), (rival, other)):
            await inbound.stack.wait_for_status(tenant, message["id"], {"sent"})
        sent = {
            (r.rcpt_tos[0], str(r.message["Subject"])): r.message for r in inbound.sink.deliveries
        }
        reply_to = str(sent["grace@example.com", "Your application"]["Reply-To"])
        again = str(sent["grace@example.com", "Second"]["Reply-To"])
        foreign = next(
            str(r.message["Reply-To"]) for r in inbound.sink.deliveries if "ann" in r.rcpt_tos[0]
        )
        token_address = reply_to.rpartition("<")[2].rstrip(">")
        foreign_token = foreign.rpartition("<")[2].rstrip(">").partition("+")[2].partition("@")[0]
        stolen = inbound.hosted(acme).replace("@", f"+{foreign_token}@", 1)
        await inbound.deliver(
            samples.plain_mail(sender="grace.private@example.net", to=token_address, subject="Re"),
            token_address,
        )
        await inbound.deliver(
            samples.plain_mail(sender="mallory@example.net", to=stolen, subject="Stolen"), stolen
        )
        await inbound.wait_routed(acme)
        tab = await inbound.messages(acme, grace["id"])
        unassigned = await inbound.unassigned(acme)
    assert token_address.startswith(inbound.hosted(acme).partition("@")[0] + "+")
    assert token_address.endswith("@" + inbound.hosted(acme).partition("@")[2])
    assert again == reply_to  # one address per conversation
    [reply] = [m for m in tab if m["direction"] == "inbound"]
    assert reply["match_reason"] == "token" and reply["from_address"] == "grace.private@example.net"
    assert reply["received_via"] == "smtp"
    [stray] = [m for m in unassigned if m["subject"] == "Stolen"]
    assert stray["candidate_id"] is None and stray["match_reason"] == "none"
