"""The round-trip test of a connection, address ownership, and switching without a gap.

Real peers: aiosmtpd servers play each company's mail system: its submission server (AUTH,
STARTTLS), through which an SMTP connection sends, and its domain's mail exchanger
(RECRUITMAIL_MX_OVERRIDES), where the platform delivers the check message. Both apply the
company's redirect rule to our inbound SMTP port, rewriting the envelope sender and adding a
Received line. The Microsoft and Google fakes redirect what a mailbox sends to itself the same
way. An attacker's own SMTP server forwards everything it sees to the attacker's hosted address.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from sqlmodel import Session, col, select

from core.models import AuditEvent, Connection, InboundRaw, Message
from tests.fakes.dns import DnsServer
from tests.fakes.smtp import Redirect, SmtpSink, is_check
from tests.helpers import Tenant, eventually
from tests.oauth_world import World, address, world
from worker.inbound_smtp import InboundSmtpServer

PASSWORD = "pa55-w0rd-Xq"


@dataclass
class Trip:
    w: World
    inbound_port: int

    @property
    def http(self) -> httpx.AsyncClient:
        return self.w.stack.http

    def hosted(self, tenant: Tenant) -> str:
        return self.w.stack.settings.hosted_address(tenant.company.slug)

    def mail_system(self, custom: str, tenant: Tenant, **sink) -> SmtpSink:
        """The company's submission server, whose mailbox for `custom` redirects to the
        company's hosted address; the same rule is set at the domain's mail exchanger."""
        context = self.w.ca.server_context(f"mx-{uuid.uuid4().hex[:6]}", ["localhost", "127.0.0.1"])
        server = SmtpSink(tls_context=context, credentials=(custom, PASSWORD), **sink)
        server.handler.redirect = Redirect(custom, self.hosted(tenant), self.inbound_port)
        self.w.mx.redirect(custom, self.hosted(tenant), self.inbound_port)
        return server

    def redirect_enabled(self, server: SmtpSink, custom: str, enabled: bool) -> None:
        """The admin sets up (or removes) the redirect rule in the company's mail system."""
        assert server.handler.redirect is not None
        server.handler.redirect.enabled = enabled
        self.w.mx.handler.redirects[custom.lower()].enabled = enabled

    def redirect(self, custom: str, tenant: Tenant) -> Redirect:
        """A mailbox's redirect to the company's hosted address, also set at the domain's
        mail exchanger (where the platform's check message arrives)."""
        self.w.mx.redirect(custom, self.hosted(tenant), self.inbound_port)
        return Redirect(custom, self.hosted(tenant), self.inbound_port)

    async def smtp_connection(self, tenant: Tenant, custom: str, port: int, **extra) -> dict:
        response = await self.create_smtp(tenant, custom, port, **extra)
        assert response.status_code == 202, response.text
        return response.json()

    async def create_smtp(self, tenant: Tenant, custom: str, port: int, **extra) -> httpx.Response:
        body = {
            "kind": "smtp",
            "custom_address": custom,
            "smtp": {
                "host": "127.0.0.1",
                "port": port,
                "security": "starttls",
                "username": custom,
                "password": PASSWORD,
            },
            **extra,
        }
        return await self.http.post("/v1/connections", json=body, headers=tenant.headers)

    async def post(self, tenant: Tenant, connection_id: str, action: str) -> httpx.Response:
        return await self.http.post(
            f"/v1/connections/{connection_id}/{action}", headers=tenant.headers
        )

    async def redirect_check(self, tenant: Tenant, connection_id: str, status: str) -> dict:
        return await eventually(
            lambda: self.w.connection(tenant, connection_id),
            lambda c: c["redirect_check"]["status"] == status,
            timeout=30,
            what=f"the redirect check reaching {status}",
        )

    def inbound_rows(self, tenant: Tenant) -> list[InboundRaw]:
        with Session(self.w.stack.engine) as session:
            return list(
                session.exec(select(InboundRaw).where(InboundRaw.company_id == tenant.company.id))
            )

    def messages(self, tenant: Tenant) -> list[Message]:
        with Session(self.w.stack.engine) as session:
            return list(
                session.exec(select(Message).where(Message.company_id == tenant.company.id))
            )


@asynccontextmanager
async def trip(temporal_client, engine, tmp_path, test_ca, **overrides) -> AsyncIterator[Trip]:
    settings = {"inbound_smtp_port": 0, "redirect_check_wait": 30, **overrides}
    async with world(temporal_client, engine, tmp_path, test_ca, **settings) as w:
        server = InboundSmtpServer(w.stack.settings, w.stack.engine, w.stack.client)
        port = await server.start()
        try:
            yield Trip(w, port)
        finally:
            await server.stop()


def custom_address() -> str:
    return address("acme-corp.example")


# -- the round trip ----------------------------------------------------------------------------


async def test_smtp_round_trip_verifies_the_redirect_and_consumes_the_message(
    temporal_client, engine, tmp_path, test_ca
):
    async with trip(temporal_client, engine, tmp_path, test_ca) as t:
        tenant = t.w.stack.tenant()
        custom = custom_address()
        with t.mail_system(custom, tenant) as server:
            created = await t.smtp_connection(tenant, custom, server.port)
            tested = await t.post(tenant, created["id"], "test")
            verified = await t.redirect_check(tenant, created["id"], "verified")
            active = await t.post(tenant, created["id"], "activate")
            settings = (await t.http.get("/v1/mail-settings", headers=tenant.headers)).json()
            unassigned = await t.http.get("/v1/messages/unassigned", headers=tenant.headers)
            await _routed(t, tenant)
        rows = t.inbound_rows(tenant)

    steps = {s["name"]: s for s in tested.json()["steps"]}
    assert tested.status_code == 200 and tested.json()["status"] == "tested"
    assert steps["send"]["status"] == "ok"
    # The answer does not wait for the redirect; on loopback it may already be back.
    assert steps["redirect"]["status"] in ("waiting", "ok")
    assert t.hosted(tenant) in steps["redirect"]["detail"]
    # The send leg went out through the company's server, from the address to itself, and
    # carries no token: its coming back proves nothing.
    [sent] = [r for r in server.received if is_check(r.raw)]
    assert (sent.mail_from, sent.rcpt_tos) == (custom, [custom])
    assert "test message from Recruitmail" in sent.message.get_content()
    assert b"x-recruitmail-check" not in sent.raw.lower() and b"<check." not in sent.raw
    # The check message went from the platform to the domain's mail exchanger, and came back
    # through the redirect with a rewritten envelope sender and a Received line on top.
    # Its return path is a platform address bound to this check, so a bounce comes back to us.
    [check] = t.w.mx.checks_for(custom)
    domain = t.w.stack.settings.platform_mail_domain
    assert check.mail_from.startswith("check-bounces+") and check.mail_from.endswith("@" + domain)
    [forwarded] = t.w.mx.handler.redirects[custom.lower()].forwarded
    assert forwarded.startswith(b"Received: from ")
    assert verified["redirect_check"]["checked_at"] is not None
    assert t.hosted(tenant) in verified["redirect_check"]["detail"]
    assert {s["name"]: s["status"] for s in verified["steps"]}["redirect"] == "ok"
    assert active.status_code == 200 and active.json()["warnings"] == []
    company_scope = settings["scopes"][0]
    assert company_scope["redirect_check"]["status"] == "verified"
    assert company_scope["warnings"] == []
    # Both messages consumed: recognised, and never shown to a recruiter.
    assert [r.state for r in rows] == ["check", "check"]
    assert t.messages(tenant) == [] and unassigned.json() == []


async def test_a_redirect_that_drops_the_header_is_still_recognised_by_message_id(
    temporal_client, engine, tmp_path, test_ca
):
    async with trip(temporal_client, engine, tmp_path, test_ca) as t:
        tenant = t.w.stack.tenant()
        custom = custom_address()
        with t.mail_system(custom, tenant) as server:
            t.w.mx.handler.redirects[custom.lower()].drop_check_header = True
            created = await t.smtp_connection(tenant, custom, server.port)
            await t.post(tenant, created["id"], "test")
            await t.redirect_check(tenant, created["id"], "verified")
    [forwarded] = t.w.mx.handler.redirects[custom.lower()].forwarded
    assert b"x-recruitmail-check" not in forwarded.lower()


async def test_no_redirect_ends_not_seen_with_instructions_and_activation_warns(
    temporal_client, engine, tmp_path, test_ca
):
    async with trip(temporal_client, engine, tmp_path, test_ca, redirect_check_wait=3) as t:
        tenant = t.w.stack.tenant()
        custom = custom_address()
        with t.mail_system(custom, tenant) as server:
            t.redirect_enabled(server, custom, False)  # the admin has not set the redirect up
            created = await t.smtp_connection(tenant, custom, server.port)
            await t.post(tenant, created["id"], "test")
            active = await t.post(tenant, created["id"], "activate")
            not_seen = await t.redirect_check(tenant, created["id"], "not_seen")
            settings = (await t.http.get("/v1/mail-settings", headers=tenant.headers)).json()
            created_again = await t.w.connection(tenant, created["id"])
    detail = not_seen["redirect_check"]["detail"]
    assert active.status_code == 200
    assert active.json()["status"] == "active"
    [warning] = active.json()["warnings"]
    assert "not verified" in warning and t.hosted(tenant) in warning
    assert t.hosted(tenant) in detail
    assert "Google Workspace" in detail and "Microsoft 365" in detail and "Elsewhere" in detail
    assert {s["name"]: s["status"] for s in not_seen["steps"]}["redirect"] == "warning"
    assert settings["scopes"][0]["redirect_check"]["status"] == "not_seen"
    assert settings["scopes"][0]["warnings"] == [warning]
    assert created_again["status"] == "active"
    assert len(t.w.mx.checks_for(custom)) == 1  # delivered, and kept in the mailbox


async def test_send_as_refused_after_data_fails_the_send_leg_in_plain_words(
    temporal_client, engine, tmp_path, test_ca
):
    async with trip(temporal_client, engine, tmp_path, test_ca) as t:
        tenant = t.w.stack.tenant()
        custom = custom_address()
        refusal = "550 5.7.60 SMTP; Client does not have permissions to send as this sender"
        with t.mail_system(custom, tenant, data_script=[refusal]) as mx:
            created = await t.smtp_connection(tenant, custom, mx.port)
            tested = await t.post(tenant, created["id"], "test")
            early = await t.post(tenant, created["id"], "activate")
    body = tested.json()
    steps = {s["name"]: s for s in body["steps"]}
    assert body["status"] == "test_failed"
    assert steps["mail_from"]["status"] == "ok"  # MAIL FROM passed: only DATA said no
    assert steps["send"]["status"] == "failed"
    assert "SendAsDenied" in steps["send"]["detail"] and custom in steps["send"]["detail"]
    assert steps["redirect"]["status"] == "skipped"
    assert body["redirect_check"]["status"] == "not_checked"
    assert early.status_code == 409 and "test_failed" in early.json()["detail"]


async def test_an_unlicensed_microsoft_mailbox_fails_the_test_and_cannot_be_activated(
    temporal_client, engine, tmp_path, test_ca
):
    async with trip(temporal_client, engine, tmp_path, test_ca) as t:
        tenant = t.w.stack.tenant()
        mailbox = custom_address()
        t.w.microsoft.controls.mailbox = mailbox
        t.w.microsoft.controls.unlicensed = True
        created = await t.w.connect(tenant, "microsoft", mailbox)
        await t.w.browse(created["authorization_url"])
        failed = await t.w.wait_status(tenant, created["id"], {"test_failed"})
        early = await t.post(tenant, created["id"], "activate")
    send = {s["name"]: s for s in failed["steps"]}["send"]
    assert send["status"] == "failed"
    assert "Exchange Online license" in send["detail"]
    assert "MailboxNotEnabledForRESTAPI" in send["detail"]
    assert "Exchange Online license" in failed["last_error"]
    assert early.status_code == 409 and "test failed" in early.json()["detail"]


async def test_microsoft_and_google_round_trips_through_their_redirects(
    temporal_client, engine, tmp_path, test_ca
):
    async with trip(temporal_client, engine, tmp_path, test_ca) as t:
        found = {}
        for kind in ("microsoft", "google"):
            tenant = t.w.stack.tenant()
            mailbox = custom_address()
            fake = t.w.fake(kind)
            fake.controls.mailbox = mailbox
            fake.controls.redirect = t.redirect(mailbox, tenant)
            created = await t.w.connect(tenant, kind, mailbox)
            await t.w.browse(created["authorization_url"])
            # The test after sign-in runs by itself; one requested now waits for it.
            again = await t.post(tenant, created["id"], "test")
            found[kind] = (again, await t.redirect_check(tenant, created["id"], "verified"))
            assert t.messages(tenant) == []
    for kind, (again, verified) in found.items():
        assert again.status_code == 200, (kind, again.text)
        assert verified["status"] == "tested", kind
        assert {s["name"]: s["status"] for s in verified["steps"]}["send"] == "ok"


async def test_a_test_requested_during_a_test_waits_and_answers_its_result(
    temporal_client, engine, tmp_path, test_ca
):
    async with trip(temporal_client, engine, tmp_path, test_ca) as t:
        tenant = t.w.stack.tenant()
        custom = custom_address()
        with t.mail_system(custom, tenant) as mx:
            created = await t.smtp_connection(tenant, custom, mx.port)
            first, second = await asyncio.gather(
                t.post(tenant, created["id"], "test"), t.post(tenant, created["id"], "test")
            )
    assert first.status_code == second.status_code == 200
    assert first.json()["status"] == second.json()["status"] == "tested", [
        s for s in first.json()["steps"] if s["status"] != "ok"
    ]
    assert len([r for r in mx.received if is_check(r.raw)]) in (1, 2)


# -- ownership -------------------------------------------------------------------------------


async def test_an_address_belongs_to_the_company_that_proved_it(
    temporal_client, engine, tmp_path, test_ca
):
    async with trip(temporal_client, engine, tmp_path, test_ca) as t:
        a, b = t.w.stack.tenant("Acme"), t.w.stack.tenant("Rival")
        custom = custom_address()
        with t.mail_system(custom, a) as mx:
            # B registers A's address first. Registering proves nothing: mail to it is
            # refused, and stored for nobody.
            claim = await t.smtp_connection(b, custom, mx.port)
            refused = await _smtp_rcpt(t.inbound_port, custom)
            # A proves it with the round trip.
            mine = await t.smtp_connection(a, custom, mx.port)
            await t.post(a, mine["id"], "test")
            await t.redirect_check(a, mine["id"], "verified")
            # Now B can no longer claim it, and mail to it, by SMTP or by the webhook's
            # header fan-out, is A's alone.
            again = await t.create_smtp(b, custom, mx.port)
            accepted = await _smtp_rcpt(t.inbound_port, custom)
            hook = await t.http.post(
                "/inbound/raw",
                content=_mail(to=f"{custom}, {t.hosted(b)}"),
                headers={
                    "Content-Type": "message/rfc822",
                    "Authorization": f"Bearer {t.w.stack.settings.effective_inbound_secret()}",
                },
            )
            await _routed(t, a)
    assert claim["status"] == "pending"
    assert refused.startswith("550")
    assert again.status_code == 409
    assert "another Recruitmail account" in again.json()["detail"]
    assert "Acme" not in again.json()["detail"] and str(a.company.id) not in again.text
    assert accepted.startswith("250")
    assert hook.status_code == 202, hook.text
    a_rows = [r for r in t.inbound_rows(a) if r.state != "check"]
    b_rows = t.inbound_rows(b)
    assert len(a_rows) == 2  # the SMTP delivery and the webhook's copy
    assert [r.recipient for r in b_rows] == [t.hosted(b)]  # only B's own hosted address


async def test_a_company_cannot_take_over_another_companys_address_through_its_own_server(
    temporal_client, engine, tmp_path, test_ca
):
    """The outside probe's attack: B connects A's address through an SMTP server that B runs,
    which forwards everything it sees (the test message with it) to B's hosted address."""
    async with trip(temporal_client, engine, tmp_path, test_ca, redirect_check_wait=3) as t:
        a, b = t.w.stack.tenant("Acme"), t.w.stack.tenant("Rival")
        custom = custom_address()
        context = t.w.ca.server_context("evil", ["localhost", "127.0.0.1"])
        with SmtpSink(tls_context=context, credentials=(custom, PASSWORD)) as evil:
            evil.handler.redirect = Redirect(custom, t.hosted(b), t.inbound_port)
            claim = await t.smtp_connection(b, custom, evil.port)
            tested = await t.post(b, claim["id"], "test")
            not_seen = await t.redirect_check(b, claim["id"], "not_seen")
            activated = await t.post(b, claim["id"], "activate")  # sending as it proves nothing
            refused = await _smtp_rcpt(t.inbound_port, custom)
            # A connects its own address, and proves it through its own mail routing.
            with t.mail_system(custom, a) as server:
                mine = await t.create_smtp(a, custom, server.port)
                assert mine.status_code == 202, mine.text
                await t.post(a, mine.json()["id"], "test")
                verified = await t.redirect_check(a, mine.json()["id"], "verified")
                accepted = await _smtp_rcpt(t.inbound_port, custom)
                await _routed(t, a)
                await _routed(t, b)
            after = await t.w.connection(b, claim["id"])
    # B's server saw the send leg and forwarded it to B: no token in it, nothing proven.
    [forwarded] = evil.handler.redirect.forwarded
    assert b"x-recruitmail-check" not in forwarded.lower() and b"<check." not in forwarded
    assert tested.json()["status"] == "tested"
    assert {s["name"]: s["status"] for s in tested.json()["steps"]}["send"] == "ok"
    # B's check message went to the address's own mail exchanger, never to B's server.
    assert [r for r in evil.received if b"x-recruitmail-check" in r.raw.lower()] == []
    assert len(t.w.mx.checks_for(custom)) == 2  # B's (kept in A's mailbox) and A's
    assert not_seen["redirect_check"]["status"] == "not_seen"
    assert activated.status_code == 200 and activated.json()["warnings"]
    # Mail for the address never reached B: refused while unproven, then A's alone.
    assert refused.startswith("550")
    assert accepted.startswith("250")
    assert [r.state for r in t.inbound_rows(b)] == ["check"]  # the forwarded send leg
    assert t.messages(b) == []
    assert [r.state for r in t.inbound_rows(a) if r.state != "check"] == ["routed"]
    assert verified["redirect_check"]["status"] == "verified"
    # B's unproven connection stopped sending as A's address once A proved it.
    assert after["status"] == "disabled"
    assert "another Recruitmail account proved" in after["last_error"]
    assert "Acme" not in after["last_error"]


async def test_an_address_is_free_again_once_its_owner_lets_it_go(
    temporal_client, engine, tmp_path, test_ca
):
    async with trip(temporal_client, engine, tmp_path, test_ca) as t:
        a, b = t.w.stack.tenant("Acme"), t.w.stack.tenant("Rival")
        custom = custom_address()
        with t.mail_system(custom, a) as server:
            mine = await t.smtp_connection(a, custom, server.port)
            await t.post(a, mine["id"], "test")
            await t.redirect_check(a, mine["id"], "verified")
            await t.post(a, mine["id"], "activate")
            held = await t.create_smtp(b, custom, server.port)
            disabled = await t.http.delete(f"/v1/connections/{mine['id']}", headers=a.headers)
            free = await t.create_smtp(b, custom, server.port)
            refused = await _smtp_rcpt(t.inbound_port, custom)
    assert held.status_code == 409
    assert disabled.status_code == 200 and disabled.json()["status"] == "disabled"
    assert free.status_code == 202, free.text
    assert refused.startswith("550")  # nobody has proven it now


async def test_a_hosted_address_is_never_a_custom_address(
    temporal_client, engine, tmp_path, test_ca
):
    async with trip(temporal_client, engine, tmp_path, test_ca) as t:
        a, b = t.w.stack.tenant("Acme"), t.w.stack.tenant("Rival")
        domain = t.w.stack.settings.platform_mail_domain
        hosted = await t.create_smtp(b, t.hosted(a), 2525)
        below = await t.create_smtp(b, f"jobs@eu.{domain}", 2525)
        oauth = await t.http.post(
            "/v1/connections",
            json={"kind": "microsoft", "custom_address": t.hosted(a)},
            headers=b.headers,
        )
        # A row written before this rule is refused at its test and at its activation.
        custom = custom_address()
        with t.mail_system(custom, b) as server:
            old = await t.smtp_connection(b, custom, server.port)
            with Session(t.w.stack.engine) as session:
                row = session.get(Connection, uuid.UUID(old["id"]))
                assert row is not None
                row.custom_address = t.hosted(a)
                session.add(row)
                session.commit()
            tested = await t.post(b, old["id"], "test")
            activated = await t.post(b, old["id"], "activate")
    for answer in (hosted, below, oauth):
        assert answer.status_code == 422, answer.text
        assert "Recruitmail's own mail domain" in answer.json()["detail"]
    assert tested.json()["status"] == "test_failed"
    assert "own mail domain" in tested.json()["last_error"]
    assert activated.status_code == 409


async def _smtp_rcpt(port: int, to: str) -> str:
    import smtplib

    def deliver() -> str:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            smtp.ehlo()
            smtp.mail("someone@outside.example")
            code, text = smtp.rcpt(to)
            if code != 250:
                return f"{code} {text.decode()}"
            code, text = smtp.data(_mail(to=to))
            return f"{code} {text.decode()}"

    return await asyncio.to_thread(deliver)


def _mail(to: str) -> bytes:
    return (
        f"From: Someone <someone@outside.example>\r\nTo: {to}\r\n"
        f"Subject: Hello\r\nMessage-ID: <{uuid.uuid4().hex}@outside.example>\r\n\r\nHi!\r\n"
    ).encode()


async def _routed(t: Trip, tenant: Tenant) -> None:
    async def pending() -> int:
        return len([r for r in t.inbound_rows(tenant) if r.state == "stored"])

    await eventually(pending, lambda n: n == 0, what="routing")


# -- switching -------------------------------------------------------------------------------


async def test_switching_from_smtp_to_microsoft_without_a_gap(
    temporal_client, engine, tmp_path, test_ca
):
    async with trip(temporal_client, engine, tmp_path, test_ca) as t:
        tenant = t.w.stack.tenant()
        custom = custom_address()
        with t.mail_system(custom, tenant) as mx:
            smtp = await t.smtp_connection(tenant, custom, mx.port)
            await t.post(tenant, smtp["id"], "test")
            assert (await t.post(tenant, smtp["id"], "activate")).status_code == 200
            # Microsoft is prepared while SMTP sends: no detour through the hosted address.
            t.w.microsoft.controls.mailbox = custom
            t.w.microsoft.controls.redirect = t.redirect(custom, tenant)
            prepared = await t.w.connect(tenant, "microsoft", custom)
            await t.w.browse(prepared["authorization_url"])
            await t.w.wait_status(tenant, prepared["id"], {"tested"})
            # A message composed for SMTP that has not gone out yet (the server says later).
            mx.handler.data_script = ["451 4.3.0 try again later"] * 3
            candidate = await t.w.stack.candidate(tenant)
            queued = await t.w.stack.send(tenant, candidate["id"])
            await eventually(lambda: _attempts(t, queued["id"]), lambda n: n >= 1)
            active = await t.w.activate(tenant, prepared["id"])
            sent = await t.w.stack.wait_for_status(tenant, queued["id"], {"sent", "failed"})
            old = await t.w.connection(tenant, smtp["id"])
        events = _audit(t, smtp["id"])
    assert active["status"] == "active"
    assert old["status"] == "disabled"
    assert ("connection.disable", prepared["id"]) in events
    assert sent["status"] == "sent", sent
    [delivered] = t.w.microsoft.deliveries
    assert sent["message_id_header"].encode() in delivered["mime"]
    assert sent["from_address"] == custom
    with Session(engine) as session:
        row = session.get(Message, uuid.UUID(sent["id"]))
        assert row is not None and row.transport == "microsoft"
        assert str(row.connection_id) == prepared["id"]
    assert mx.deliveries == []  # never sent twice


async def _attempts(t: Trip, message_id: str) -> int:
    with Session(t.w.stack.engine) as session:
        row = session.get(Message, uuid.UUID(message_id))
        return row.attempts if row else 0


def _audit(t: Trip, connection_id: str) -> list[tuple[str, str]]:
    with Session(t.w.stack.engine) as session:
        rows = session.exec(
            select(AuditEvent).where(col(AuditEvent.target) == f"connection:{connection_id}")
        ).all()
        return [(e.action, e.detail.get("replaced_by", "")) for e in rows]


async def test_a_stale_tested_setup_cannot_take_over_after_another_was_activated(
    temporal_client, engine, tmp_path, test_ca
):
    async with trip(temporal_client, engine, tmp_path, test_ca) as t:
        tenant = t.w.stack.tenant()
        first, second = custom_address(), custom_address()
        with t.mail_system(first, tenant) as mx1, t.mail_system(second, tenant) as mx2:
            one = await t.smtp_connection(tenant, first, mx1.port)
            two = await t.smtp_connection(tenant, second, mx2.port)
            await t.post(tenant, one["id"], "test")
            await t.post(tenant, two["id"], "test")
            activated = await t.post(tenant, one["id"], "activate")
            stale = await t.post(tenant, two["id"], "activate")
            after = await t.w.connection(tenant, two["id"])
            run = await _run_status(t, two["id"])
    assert activated.status_code == 200
    assert stale.status_code == 409
    assert first in stale.json()["detail"] and "was activated" in stale.json()["detail"]
    assert after["status"] == "cancelled" and first in after["last_error"]
    assert run in ("COMPLETED", "RUNNING")  # told to stop; it ends once its redirect wait does


async def _run_status(t: Trip, connection_id: str) -> str:
    handle = t.w.stack.client.get_workflow_handle(f"connection-setup-{connection_id}")
    described = await handle.describe()
    return described.status.name if described.status else ""


async def test_a_legal_entitys_own_address_sends_under_its_name(
    temporal_client, engine, tmp_path, test_ca
):
    async with trip(temporal_client, engine, tmp_path, test_ca) as t:
        tenant = t.w.stack.tenant("Acme Group")
        entity = (
            await t.http.post(
                "/v1/legal-entities", json={"name": "Acme Germany GmbH"}, headers=tenant.headers
            )
        ).json()
        custom = custom_address()
        with t.mail_system(custom, tenant) as mx:
            connection = await t.smtp_connection(
                tenant, custom, mx.port, legal_entity_id=entity["id"]
            )
            await t.post(tenant, connection["id"], "test")
            await t.post(tenant, connection["id"], "activate")
            candidate = await t.w.stack.candidate(tenant, legal_entity_id=entity["id"])
            queued = await t.w.stack.send(tenant, candidate["id"])
            await t.w.stack.wait_for_status(tenant, queued["id"], {"sent"})
    [delivered] = mx.deliveries
    assert str(delivered.message["From"]) == f"Acme Germany GmbH <{custom}>"


async def test_an_exchanger_that_refuses_a_non_fqdn_helo_accepts_the_check(
    temporal_client, engine, tmp_path, test_ca
):
    """Postfix's reject_non_fqdn_helo_hostname, common on real MXs, refused `EHLO localhost`
    with 504 5.5.2, and the admin was told to check a candidate's address. Recruitmail now
    greets with a real name (RECRUITMAIL_SMTP_HELO_NAME, else the public URL's host or the
    platform domain), and the check goes through."""
    async with trip(temporal_client, engine, tmp_path, test_ca) as t:
        t.w.mx.handler.require_fqdn_helo = True
        tenant = t.w.stack.tenant()
        custom = custom_address()
        with t.mail_system(custom, tenant) as server:
            server.handler.require_fqdn_helo = True
            created = await t.smtp_connection(tenant, custom, server.port)
            tested = await t.post(tenant, created["id"], "test")
            verified = await t.redirect_check(tenant, created["id"], "verified")
    assert tested.json()["status"] == "tested", tested.json()["last_error"]
    assert verified["redirect_check"]["status"] == "verified"
    names = set(t.w.mx.handler.helo_names) | set(server.handler.helo_names)
    assert names == {t.w.stack.settings.helo_name} and "." in t.w.stack.settings.helo_name


async def test_a_refused_check_message_says_what_was_refused_without_blaming_a_candidate(
    temporal_client, engine, tmp_path, test_ca
):
    async with trip(temporal_client, engine, tmp_path, test_ca) as t:
        tenant = t.w.stack.tenant()
        custom = custom_address()
        t.w.mx.handler.rcpt_script[custom.lower()] = ["550 5.1.1 <x>: Recipient address rejected"]
        with t.mail_system(custom, tenant) as server:
            created = await t.smtp_connection(tenant, custom, server.port)
            tested = await t.post(tenant, created["id"], "test")
    redirect = {s["name"]: s for s in tested.json()["steps"]}["redirect"]
    assert "550 5.1.1" in redirect["detail"] and "check message" in redirect["detail"]
    assert "candidate" not in redirect["detail"].lower()


async def test_a_domain_whose_mx_is_recruitmail_is_proven_by_its_dns_record(
    temporal_client, engine, tmp_path, test_ca
):
    """A domain that points its MX straight at Recruitmail's receiver: any claimant's check
    message would arrive, so it proves nothing. The test asks for a TXT record whose value is
    bound to the company; once published, the address is proven and its mail is received."""
    with DnsServer() as dns:
        async with trip(
            temporal_client, engine, tmp_path, test_ca, dns_nameservers=dns.nameservers
        ) as t:
            receiver = t.w.stack.settings.inbound_smtp_hostname
            dns.mx("direct.example", receiver)
            tenant, rival = t.w.stack.tenant(), t.w.stack.tenant("Rival")
            custom = f"jobs-{uuid.uuid4().hex[:6]}@direct.example"
            with t.mail_system(custom, tenant) as server, t.mail_system(custom, rival) as other:
                created = await t.smtp_connection(tenant, custom, server.port)
                first = await t.post(tenant, created["id"], "test")
                claimed = await t.smtp_connection(rival, custom, other.port)
                rivals = await t.post(rival, claimed["id"], "test")
                asked = {s["name"]: s for s in first.json()["steps"]}["redirect"]["detail"]
                value = re.search(r"value (recruitmail-verification=\S+)", asked).group(1)
                dns.txt("_recruitmail.direct.example", value)
                again = await t.post(tenant, created["id"], "test")
                rivals_again = await t.post(rival, claimed["id"], "test")
                answer = await _smtp_rcpt(t.inbound_port, custom)
    assert first.json()["redirect_check"]["status"] == "not_seen"
    assert f"TXT, name _recruitmail.direct.example, value {value}" in asked
    rival_value = {s["name"]: s for s in rivals.json()["steps"]}["redirect"]["detail"]
    assert value not in rival_value  # bound to the company: another's record is another value
    assert again.json()["redirect_check"]["status"] == "verified"
    assert "DNS record proves" in again.json()["redirect_check"]["detail"]
    assert rivals_again.json()["redirect_check"]["status"] == "not_seen"
    assert answer.startswith("250")
