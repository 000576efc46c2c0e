"""The ways replies reach Recruitmail (issue 30): a redirect that is checked again and whose
refusal is explained, Gmail's forwarding confirmation, the hosted reply-to address on a
connection, and the inbound paths' API. Mailbox sync has tests/test_mailbox_sync.py.

Real peers: the company's mail systems are aiosmtpd servers (tests/test_round_trip.py's
`trip`); the exchanger that refuses to forward sends a delivery report laid out as Exchange
Online's, to the check message's return path.
"""

from __future__ import annotations

import asyncio
import smtplib
import uuid
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from sqlmodel import Session, select

from contracts.connections.setup import RecheckPage
from core.models import InboundRaw, Message
from tests.helpers import Tenant, eventually
from tests.test_round_trip import Trip, custom_address, trip
from workflows.inbound_paths import InboundRecheckWorkflow

M365_REFUSAL = (
    "550 5.7.520 Access denied, Your organization does not allow external forwarding. Please "
    "contact your administrator for further assistance. AS(7555)"
)


def deliver(port: int, message: EmailMessage, to: list[str], sender: str | None = None) -> None:
    """Mail to our receiver, from another thread (the receiver runs in this event loop)."""
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        smtp.send_message(message, from_addr=sender, to_addrs=to)


def notices(t: Trip, tenant: Tenant, address: str) -> list:
    """The platform's emails to the tenant's admin about replies to `address`."""
    admin = f"admin@{tenant.company.slug}.example.com"
    return [
        r
        for r in t.w.platform.received
        if admin in r.rcpt_tos and f"Replies to {address}" in str(r.message["Subject"])
    ]


async def inbound(t: Trip, tenant: Tenant, connection_id: str) -> dict:
    response = await t.http.get(f"/v1/connections/{connection_id}/inbound", headers=tenant.headers)
    assert response.status_code == 200, response.text
    return response.json()


def states(body: dict) -> dict[str, dict]:
    return {s["path"]: s for s in body["states"]}


async def test_a_microsoft_forwarding_refusal_blocks_the_redirect_with_the_fix(
    temporal_client, engine, tmp_path, test_ca
):
    async with trip(temporal_client, engine, tmp_path, test_ca) as t:
        tenant = t.w.stack.tenant()
        mailbox = custom_address()
        fake = t.w.microsoft
        fake.controls.mailbox = mailbox
        fake.controls.redirect = t.redirect(mailbox, tenant)
        # Exchange Online's default outbound policy: the forward is refused, and the report
        # goes to the envelope sender of the check message.
        rule = t.w.mx.handler.redirects[mailbox.lower()]
        rule.refusal = M365_REFUSAL
        created = await t.w.connect(tenant, "microsoft", mailbox)
        await t.w.browse(created["authorization_url"])
        blocked = await t.redirect_check(tenant, created["id"], "blocked")
        rows = t.inbound_rows(tenant)
        unassigned = await t.http.get("/v1/messages/unassigned", headers=tenant.headers)
    detail = blocked["redirect_check"]["detail"]
    assert len(rule.reports) == 1 and rule.forwarded == []
    # The reason in words, the Microsoft fix (both places), and the other ways in.
    assert "5.7.520" in detail and "does not allow external forwarding" in detail
    assert "Anti-spam" in detail and "Automatic forwarding rules" in detail
    assert "Remote domains" in detail and t.hosted(tenant).partition("@")[2] in detail
    assert "mailbox_sync" in detail and "hosted_reply_to" in detail
    assert {s["name"]: s["status"] for s in blocked["steps"]}["redirect"] == "failed"
    # The report was consumed: never in Unassigned, never on a candidate's tab.
    # (The send leg's own test message came back through the mailbox's rule: consumed too.)
    assert rows and {r.state for r in rows} == {"check"} and unassigned.json() == []
    assert t.messages(tenant) == []


async def test_a_removed_redirect_is_found_by_the_recheck_and_sending_goes_on(
    temporal_client, engine, tmp_path, test_ca
):
    async with trip(temporal_client, engine, tmp_path, test_ca, redirect_check_wait=3) as t:
        tenant = t.w.stack.tenant()
        custom = custom_address()
        with t.mail_system(custom, tenant) as server:
            created = await t.smtp_connection(tenant, custom, server.port)
            await t.post(tenant, created["id"], "test")
            await t.redirect_check(tenant, created["id"], "verified")
            active = await t.post(tenant, created["id"], "activate")
            before = states(await inbound(t, tenant, created["id"]))
            # The company removes its redirect; the connection still says verified.
            t.redirect_enabled(server, custom, False)
            recheck = await t.post(tenant, created["id"], "test")
            not_seen = await t.redirect_check(tenant, created["id"], "not_seen")
            after = states(await inbound(t, tenant, created["id"]))
            told = await eventually(
                lambda: _async(notices(t, tenant, custom)), bool, what="the admins' email"
            )
            # The daily sweep (what the inbound-recheck Schedule starts) checks it again: it
            # fails again, and tells nobody twice.
            settings = t.w.stack.settings
            await t.w.stack.client.execute_workflow(
                InboundRecheckWorkflow.run,
                RecheckPage(
                    redirect_wait=settings.redirect_check_wait, company_id=str(tenant.company.id)
                ),
                id=f"inbound-recheck-{uuid.uuid4().hex[:8]}",
                task_queue=settings.task_queue,
            )
            again = await eventually(
                lambda: t.w.connection(tenant, created["id"]),
                lambda c: (
                    c["redirect_check"]["checked_at"] != not_seen["redirect_check"]["checked_at"]
                ),
                what="the sweep's check ending",
            )
            await eventually(
                lambda: t.w.connection(tenant, created["id"]),
                lambda c: c["redirect_check"]["checking_since"] is None,
                what="the second re-check ending",
            )
            sent = await t.w.stack.send_and_settle(tenant)
            events = (
                await t.http.get(
                    "/v1/events",
                    params={"types": "connection.inbound_path_changed"},
                    headers=tenant.headers,
                )
            ).json()
            later = notices(t, tenant, custom)
    assert active.status_code == 200 and before["redirect"]["state"] == "active"
    # A re-check of an active connection is accepted and leaves it active.
    assert recheck.status_code == 200 and recheck.json()["status"] == "active"
    assert again["status"] == "active"
    assert not_seen["status"] == "active"
    assert after["redirect"]["state"] == "failing"
    assert "did not come back" in after["redirect"]["reason"]
    assert len(told) == 1 and len(later) == 1
    assert "stopped working" in told[0].message.get_content()
    assert sent["status"] == "sent"  # sending was not interrupted
    changed = events["data"]
    assert [(e["data"]["path"], e["data"]["state"]) for e in changed] == [("redirect", "failing")]


async def _async(value):
    return value


async def test_gmail_forwarding_confirmation_shows_its_code_and_never_reaches_unassigned(
    temporal_client, engine, tmp_path, test_ca
):
    async with trip(temporal_client, engine, tmp_path, test_ca) as t:
        tenant = t.w.stack.tenant()
        custom = custom_address()
        with t.mail_system(custom, tenant) as server:
            created = await t.smtp_connection(tenant, custom, server.port)
        confirmation = EmailMessage()
        confirmation["From"] = "Gmail Team <forwarding-noreply@google.com>"
        confirmation["To"] = t.hosted(tenant)
        confirmation["Subject"] = (
            f"(#482913574) Gmail Forwarding Confirmation - Receive Mail from {custom}"
        )
        confirmation["Date"] = formatdate(usegmt=True)
        confirmation["Message-ID"] = make_msgid(domain="google.com")
        confirmation.set_content(
            f"{custom} has requested to automatically forward mail to your email address "
            f"{t.hosted(tenant)}.\nConfirmation code: 482913574\n\nTo allow {custom} to "
            "automatically forward mail to your address, please click the link below to "
            "confirm the request:\nhttps://mail-settings.google.com/mail/vf-abc\n"
        )
        await asyncio.to_thread(deliver, t.inbound_port, confirmation, [t.hosted(tenant)], "")
        shown = await eventually(
            lambda: t.w.connection(tenant, created["id"]),
            lambda c: c["forwarding_confirmation"] is not None,
            what="the forwarding code on the connection",
        )
        events = (
            await t.http.get(
                "/v1/events",
                params={"types": "connection.forwarding_confirmation"},
                headers=tenant.headers,
            )
        ).json()
        unassigned = await t.http.get("/v1/messages/unassigned", headers=tenant.headers)
    assert shown["forwarding_confirmation"]["code"] == "482913574"
    [event] = events["data"]
    assert event["data"] == {"connection_id": created["id"], "code": "482913574"}
    assert unassigned.json() == [] and t.messages(tenant) == []


async def test_hosted_reply_to_on_a_connection_brings_replies_back_without_any_redirect(
    temporal_client, engine, tmp_path, test_ca
):
    async with trip(temporal_client, engine, tmp_path, test_ca, redirect_check_wait=2) as t:
        tenant = t.w.stack.tenant()
        custom = custom_address()
        with t.mail_system(custom, tenant) as server:
            t.redirect_enabled(server, custom, False)  # a tenant that cannot forward at all
            created = await t.smtp_connection(
                tenant, custom, server.port, inbound_paths=["hosted_reply_to"]
            )
            await t.post(tenant, created["id"], "test")
            active = await t.post(tenant, created["id"], "activate")
            candidate = await t.w.stack.candidate(tenant)
            queued = await t.w.stack.send(tenant, candidate["id"])
            await t.w.stack.wait_for_status(tenant, queued["id"], {"sent"})
            [out] = [r for r in server.received if r.rcpt_tos == [candidate["email"]]]
            reply_to = str(out.message["Reply-To"])
            # The candidate's client drops In-Reply-To and References; only the address stays.
            reply = EmailMessage()
            reply["From"] = candidate["email"]
            reply["To"] = reply_to
            reply["Subject"] = "Re: hello"
            reply["Message-ID"] = make_msgid(domain="example.com")
            reply.set_content("Yes, Thursday works.")
            token_address = reply_to.rpartition("<")[2].rstrip(">")
            await asyncio.to_thread(deliver, t.inbound_port, reply, [token_address])
            messages = await eventually(
                lambda: _tab(t, tenant, candidate["id"]),
                lambda items: any(m["direction"] == "inbound" for m in items),
                what="the reply on the Messages tab",
            )
            paths = states(await inbound(t, tenant, created["id"]))
    assert active.status_code == 200 and active.json()["warnings"] == []
    assert token_address.startswith(t.hosted(tenant).partition("@")[0] + "+")
    [received] = [m for m in messages if m["direction"] == "inbound"]
    assert received["match_reason"] == "token"
    assert paths["hosted_reply_to"]["state"] == "active"


async def _tab(t: Trip, tenant: Tenant, candidate_id: str) -> list[dict]:
    response = await t.http.get(f"/v1/candidates/{candidate_id}/messages", headers=tenant.headers)
    return response.json()


async def test_inbound_paths_api_refuses_what_cannot_work_and_stays_in_its_company(
    temporal_client, engine, tmp_path, test_ca
):
    async with trip(temporal_client, engine, tmp_path, test_ca) as t:
        tenant, other = t.w.stack.tenant(), t.w.stack.tenant()
        custom = custom_address()
        with t.mail_system(custom, tenant) as server:
            created = await t.smtp_connection(tenant, custom, server.port)
        url = f"/v1/connections/{created['id']}/inbound"
        sync_on_smtp = await t.http.put(
            url, json={"paths": ["mailbox_sync"]}, headers=tenant.headers
        )
        empty = await t.http.put(url, json={"paths": []}, headers=tenant.headers)
        unknown = await t.http.put(url, json={"paths": ["carrier_pigeon"]}, headers=tenant.headers)
        foreign_read = await t.http.get(url, headers=other.headers)
        foreign_write = await t.http.put(
            url, json={"paths": ["hosted_reply_to"]}, headers=other.headers
        )
        changed = await t.http.put(
            url, json={"paths": ["redirect", "hosted_reply_to"], "import": "all"},
            headers=tenant.headers,
        )  # fmt: skip
        audit = (await t.http.get("/v1/audit", headers=tenant.headers)).json()
    assert sync_on_smtp.status_code == 409
    assert "SMTP connection" in sync_on_smtp.json()["detail"]
    assert "hosted_reply_to" in sync_on_smtp.json()["detail"]
    assert empty.status_code == 422 and unknown.status_code == 422
    assert foreign_read.status_code == 404 and foreign_write.status_code == 404
    body = changed.json()
    assert changed.status_code == 200, body
    assert body["paths"] == ["redirect", "hosted_reply_to"] and body["import"] == "all"
    assert body["reply_to_example"].startswith(t.hosted(tenant).partition("@")[0] + "+")
    entries = [e for e in audit if e["action"] == "connection.inbound_paths"]
    assert entries and entries[0]["detail"]["import"] == {"before": "replies", "after": "all"}
    with Session(t.w.stack.engine) as session:  # nothing of the other company's was touched
        assert (
            session.exec(select(InboundRaw).where(InboundRaw.company_id == other.company.id)).all()
            == []
        )
        assert (
            session.exec(select(Message).where(Message.company_id == other.company.id)).all() == []
        )
