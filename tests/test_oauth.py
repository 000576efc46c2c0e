"""Google and Microsoft connections end to end: the real msal and google-auth-oauthlib clients
against local fakes, the real setup workflow, the API's callbacks, and sending."""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import timedelta
from email import message_from_bytes
from urllib.parse import parse_qs, urlparse

import httpx
from sqlmodel import Session

from core.models import Connection
from tests.fakes.oauth import client_context
from tests.oauth_world import API, address, connected, world


async def test_microsoft_journey_sign_in_test_activate_send(
    temporal_client, engine, tmp_path, test_ca
):
    async with world(temporal_client, engine, tmp_path, test_ca) as w:
        tenant = w.stack.tenant()
        mailbox = address()
        w.microsoft.controls.mailbox = mailbox
        created = await w.connect(tenant, "microsoft", mailbox)
        link = urlparse(created["authorization_url"])
        params = parse_qs(link.query)
        page = await w.browse(created["authorization_url"])
        tested = await w.wait_status(tenant, created["id"], {"tested"})
        active = await w.activate(tenant, created["id"])
        sent = await w.stack.send_and_settle(tenant, subject="Interview")
        history = await w.setup_history(created["id"])

    assert created["status"] == "awaiting_authorization"
    assert f"{link.scheme}://{link.netloc}" == w.microsoft.url
    assert "prompt" not in params  # never prompt=consent
    assert params["code_challenge_method"] == ["S256"]
    assert params["login_hint"] == [mailbox]
    assert "Mail.Send" in params["scope"][0]
    assert page.status_code == 200 and "Mailbox connected" in page.text
    assert tested["sending_mailbox"] == mailbox
    statuses = {s["name"]: s["status"] for s in tested["steps"]}
    assert statuses.pop("redirect") == "waiting"  # no redirect set up in this test
    assert set(statuses.values()) == {"ok"} and statuses["send"] == "ok"
    assert active["status"] == "active"
    assert sent["status"] == "sent", sent
    assert sent["from_address"] == mailbox
    [delivered] = w.microsoft.deliveries
    assert delivered["address"] == mailbox
    assert sent["message_id_header"].encode() in delivered["mime"]  # our Message-ID survives
    assert len(w.platform.received) == 0
    assert created["id"] in history  # the history is readable: the scan means something
    leaked = [secret for secret in w.microsoft.issued if secret in history]
    assert leaked == []
    assert "code_verifier" not in history


async def test_microsoft_admin_consent_wait_then_resume(temporal_client, engine, tmp_path, test_ca):
    async with world(temporal_client, engine, tmp_path, test_ca) as w:
        tenant = w.stack.tenant()
        mailbox = address("fabrikam.example")
        w.microsoft.controls.mailbox = mailbox
        w.microsoft.controls.require_admin_consent = True
        created = await w.connect(tenant, "microsoft", mailbox)
        page = await w.browse(created["authorization_url"])
        waiting = await w.connection(tenant, created["id"])
        consent_link = waiting["admin_consent_url"]
        portal_page = await w.browse(consent_link)
        resumed = await w.connection(tenant, created["id"])
        replayed = await w.browse(consent_link)
        second = await w.browse(resumed["authorization_url"])
        tested = await w.wait_status(tenant, created["id"], {"tested"})
        active = await w.activate(tenant, created["id"])
        history = await w.setup_history(created["id"])

    assert page.status_code == 200 and "An administrator must approve" in page.text
    assert waiting["status"] == "awaiting_admin_consent"
    assert "65001" in waiting["last_error"]
    assert consent_link.startswith(f"{w.microsoft.url}/fabrikam.example/v2.0/adminconsent?")
    assert parse_qs(urlparse(consent_link).query)["client_id"] == [w.microsoft.client_id]
    assert consent_link in page.text.replace("&amp;", "&")
    assert portal_page.status_code == 200 and "Consent granted" in portal_page.text
    assert resumed["status"] == "awaiting_authorization"
    assert resumed["admin_consent_url"] is None
    assert (
        resumed["authorization_url"]
        and resumed["authorization_url"] != created["authorization_url"]
    )
    # A second click on the spent consent link says that consent was given, not an error.
    assert replayed.status_code == 200 and "Consent was already given" in replayed.text
    assert resumed["last_error"] is None  # "an administrator must approve" no longer holds
    assert second.status_code == 200
    assert tested["status"] == "tested" and active["status"] == "active"
    assert [s for s in w.microsoft.issued if s in history] == []


async def test_mismatched_mailbox_and_unticked_scope_fail_with_reasons(
    temporal_client, engine, tmp_path, test_ca
):
    async with world(temporal_client, engine, tmp_path, test_ca) as w:
        tenant = w.stack.tenant()
        # Microsoft: another mailbox, without the address among its own or Send As rights on
        # it. Graph may still let a mailbox send as another, so the test message decides.
        wanted = address()
        w.microsoft.controls.mailbox = "shared.person@contoso.example"
        created = await w.connect(tenant, "microsoft", wanted)
        await w.browse(created["authorization_url"])
        failed = await w.wait_status(tenant, created["id"], {"test_failed"})

        # Google: another mailbox, and no send-as alias: the setup ends.
        other = address("acme.example")
        w.google.controls.mailbox = "someone.else@acme.example"
        o_created = await w.connect(tenant, "google", other)
        o_page = await w.browse(o_created["authorization_url"])
        o_failed = await w.wait_status(tenant, o_created["id"], {"failed"})

        g_address = address("acme.example")
        w.google.controls.mailbox = g_address
        w.google.controls.drop_send_scope = True
        g_created = await w.connect(tenant, "google", g_address)
        g_page = await w.browse(g_created["authorization_url"])
        g_failed = await w.wait_status(tenant, g_created["id"], {"failed"})

    send = {s["name"]: s for s in failed["steps"]}["send"]
    assert send["status"] == "failed"
    for text in (send["detail"], failed["last_error"]):
        assert "shared.person@contoso.example" in text and wanted in text
        assert "Send As rights" in text
    assert failed["authorization_url"] is None
    assert o_page.status_code == 200 and "The mailbox was not connected" in o_page.text
    assert "someone.else@acme.example" in o_failed["last_error"] and other in o_failed["last_error"]
    assert "verified send-as alias" in o_failed["last_error"]
    assert "Google group" in o_failed["last_error"]  # the way for a group or a delegation
    assert g_page.status_code == 200 and "The mailbox was not connected" in g_page.text
    assert "send email on your behalf was not granted" in g_failed["last_error"]


async def test_an_alias_the_identity_provider_vouches_for_connects(
    temporal_client, engine, tmp_path, test_ca
):
    async with world(temporal_client, engine, tmp_path, test_ca, google_send_as_aliases=True) as w:
        tenant = w.stack.tenant()
        # Microsoft: the address is one of the mailbox's proxy addresses.
        proxied = address()
        w.microsoft.controls.mailbox = "recruiting.team@contoso.example"
        w.microsoft.controls.aliases = [proxied]
        ms = await w.connect(tenant, "microsoft", proxied)
        await w.browse(ms["authorization_url"])
        ms_tested = await w.wait_status(tenant, ms["id"], {"tested", "test_failed", "failed"})
        # Microsoft: a shared mailbox the signed-in one holds Send As and Full Access on,
        # proven by the test message (sent from it, saved in its Sent Items).
        delegated = address()
        w.microsoft.controls.aliases = []
        w.microsoft.controls.send_as = [delegated]
        w.microsoft.controls.full_access = [delegated]
        sa = await w.connect(tenant, "microsoft", delegated)
        await w.browse(sa["authorization_url"])
        sa_tested = await w.wait_status(tenant, sa["id"], {"tested", "test_failed", "failed"})
        # Google: a verified send-as alias connects; one still pending does not.
        verified, pending = address("acme.example"), address("acme.example")
        w.google.controls.mailbox = "hr@acme.example"
        w.google.controls.send_as = [
            {"sendAsEmail": verified, "verificationStatus": "accepted"},
            {"sendAsEmail": pending, "verificationStatus": "pending"},
        ]
        g = await w.connect(tenant, "google", verified)
        await w.browse(g["authorization_url"])
        g_tested = await w.wait_status(tenant, g["id"], {"tested", "test_failed", "failed"})
        p = await w.connect(tenant, "google", pending)
        await w.browse(p["authorization_url"])
        p_failed = await w.wait_status(tenant, p["id"], {"tested", "test_failed", "failed"})
        scopes = w.google.authorize_requests[-1]["scope"]

    assert ms_tested["status"] == "tested", ms_tested["last_error"]
    mailbox_step = {s["name"]: s for s in ms_tested["steps"]}["Signed-in mailbox"]
    assert "recruiting.team@contoso.example" in mailbox_step["detail"]
    assert sa_tested["status"] == "tested", sa_tested["last_error"]
    assert g_tested["status"] == "tested", g_tested["last_error"]
    # Which mode each runs in: the shared mailbox sends from itself, into its Sent Items.
    modes = [c["mailbox_mode"] for c in (ms_tested, sa_tested, g_tested)]
    assert modes == ["own", "shared", "own"]
    assert len(w.microsoft.sent_items[delegated]) == 1
    assert p_failed["status"] == "failed"
    assert "hr@acme.example" in p_failed["last_error"] and pending in p_failed["last_error"]
    assert "gmail.settings.basic" in scopes


async def test_forged_or_replayed_state_changes_nothing(temporal_client, engine, tmp_path, test_ca):
    async with world(temporal_client, engine, tmp_path, test_ca) as w:
        tenant = w.stack.tenant()
        mailbox = address()
        w.microsoft.controls.mailbox = mailbox
        created = await w.connect(tenant, "microsoft", mailbox)
        state = parse_qs(urlparse(created["authorization_url"]).query)["state"][0]
        kid, body, mac = state.split(".")
        forged = [
            "not-a-state",
            f"{kid}.{body}.{mac[:-2]}AA",  # a bad signature
            f"{kid}.{body[:-4]}AAAA.{mac}",  # tampered claims
        ]
        answers = [
            await w.stack.http.get(f"/oauth/microsoft/callback?code=stolen&state={s}")
            for s in forged
        ]
        wrong_provider = await w.stack.http.get(f"/oauth/google/callback?code=x&state={state}")
        unchanged = await w.connection(tenant, created["id"])
        page = await w.browse(created["authorization_url"])
        async with httpx.AsyncClient(verify=client_context(w.ca)) as browser:
            location = (await browser.get(created["authorization_url"])).headers["location"]
        replay = await w.stack.http.get(location.removeprefix(API))
        tested = await w.wait_status(tenant, created["id"], {"tested"})

    assert [a.status_code for a in answers] == [400, 400, 400]
    assert all("Nothing was changed" in a.text for a in answers)
    assert wrong_provider.status_code == 400
    assert unchanged["status"] == "awaiting_authorization"
    assert unchanged["authorization_url"] == created["authorization_url"]
    assert page.status_code == 200  # the real sign-in still works after the forgeries
    # A replayed (reloaded) genuine callback changes nothing: it shows the setup's page.
    assert replay.status_code == 303
    assert replay.headers["location"].startswith(f"{API}/setup/{created['id']}?key=")
    assert tested["status"] == "tested"


async def test_microsoft_refresh_tokens_are_saved_revocation_needs_reauth_then_reconnect(
    temporal_client, engine, tmp_path, test_ca
):
    async with world(temporal_client, engine, tmp_path, test_ca) as w:
        tenant = w.stack.tenant()
        mailbox = address()
        # Short-lived access tokens: every send refreshes, and each refresh token works once
        # here (stricter than Microsoft), so the second send works only if the first one saved
        # the new refresh token.
        w.microsoft.controls.access_token_lifetime = 60
        w.microsoft.controls.single_use_refresh_tokens = True
        connection = await connected(w, tenant, "microsoft", mailbox)
        first = await w.stack.send_and_settle(tenant)
        second = await w.stack.send_and_settle(tenant)
        w.microsoft.revoke(mailbox)
        refused = await w.stack.send_and_settle(tenant)
        flagged = await w.connection(tenant, connection["id"])

        w.microsoft.revoked.clear()
        again = await w.stack.http.post(
            f"/v1/connections/{connection['id']}/reconnect", headers=tenant.headers
        )
        page = await w.browse(again.json()["authorization_url"])
        restored = await w.wait_status(tenant, connection["id"], {"active"})
        after = await w.stack.send_and_settle(tenant)

    assert (first["status"], second["status"]) == ("sent", "sent")
    assert refused["status"] == "failed"
    assert "reconnect the mailbox" in refused["error"]
    assert refused["attempts"] == 1  # a revoked grant is not retried
    assert flagged["status"] == "needs_reauth"
    assert again.status_code == 202, again.text
    assert again.json()["status"] == "needs_reauth"  # still the sender: no silent fallback
    assert again.json()["setup_state"] == "awaiting_authorization"
    # The reconnect's own progress, not the live connection's "needs a new sign-in".
    assert page.status_code == 200 and "Mailbox connected" in page.text
    assert restored["status"] == "active"
    assert after["status"] == "sent"
    assert len(w.microsoft.deliveries) == 3
    assert len(w.platform.received) == 0


async def test_graph_and_gmail_throttling_honours_retry_after(
    temporal_client, engine, tmp_path, test_ca
):
    async with world(temporal_client, engine, tmp_path, test_ca) as w:
        ms_tenant, g_tenant = w.stack.tenant(), w.stack.tenant()
        await connected(w, ms_tenant, "microsoft", address())
        await connected(w, g_tenant, "google", address("acme.example"))
        w.microsoft.controls.throttle_sends = 2
        w.google.controls.throttle_sends = 1
        started = asyncio.get_running_loop().time()
        ms_sent = await w.stack.send_and_settle(ms_tenant)
        ms_elapsed = asyncio.get_running_loop().time() - started
        g_sent = await w.stack.send_and_settle(g_tenant)

    assert ms_sent["status"] == "sent" and ms_sent["attempts"] == 3
    assert ms_elapsed >= 2.0  # two answers of Retry-After: 1, longer than the 100 ms backoff
    assert g_sent["status"] == "sent" and g_sent["attempts"] == 2
    assert len(w.microsoft.deliveries) == 1 and len(w.google.deliveries) == 1
    # Every send of a provider, the connection tests' included, went over one pooled client:
    # one TCP connection each, where a client per send opened one per request.
    assert len([p for p, _ in w.microsoft.peers if p.endswith("/sendMail")]) == 4
    assert len(w.microsoft.connections("/sendMail")) == 1
    assert len(w.google.connections("/messages/send")) == 1


async def test_google_journey_blocked_app_admin_says_granted_then_send_then_revoked(
    temporal_client, engine, tmp_path, test_ca
):
    async with world(temporal_client, engine, tmp_path, test_ca) as w:
        tenant = w.stack.tenant()
        mailbox = address("acme.example")
        w.google.controls.mailbox = mailbox
        w.google.controls.block_app = True
        created = await w.connect(tenant, "google", mailbox)
        params = parse_qs(urlparse(created["authorization_url"]).query)
        blocked_page = await w.browse(created["authorization_url"])
        waiting = await w.wait_status(tenant, created["id"], {"awaiting_admin_consent"})
        w.google.controls.block_app = False
        granted = await w.stack.http.post(
            f"/v1/connections/{created['id']}/admin-consent-granted", headers=tenant.headers
        )
        page = await w.browse(granted.json()["authorization_url"])
        await w.wait_status(tenant, created["id"], {"tested"})
        await w.activate(tenant, created["id"])
        sent = await w.stack.send_and_settle(tenant, subject="Hello from Gmail")
        w.google.revoke(mailbox)
        refused = await w.stack.send_and_settle(tenant)
        flagged = await w.connection(tenant, created["id"])
        history = await w.setup_history(created["id"])

    assert params["access_type"] == ["offline"]
    assert params["code_challenge_method"] == ["S256"]
    assert blocked_page.status_code == 200
    assert "Blocked by your Google Workspace admin" in blocked_page.text
    assert w.google.client_id in blocked_page.text and "gmail.send" in blocked_page.text
    assert "/v1/connections" not in blocked_page.text  # steps for a person, not API calls
    assert w.google.client_id in waiting["admin_instructions"]
    assert "Manage third-party app access" in waiting["admin_instructions"]
    assert granted.status_code == 200, granted.text
    assert granted.json()["status"] == "awaiting_authorization"
    assert page.status_code == 200
    assert sent["status"] == "sent"
    [delivered] = w.google.deliveries
    assert delivered["address"] == mailbox
    assert sent["message_id_header"].encode() in delivered["mime"]
    assert refused["status"] == "failed" and "reconnect the mailbox" in refused["error"]
    assert flagged["status"] == "needs_reauth"
    assert [s for s in w.google.issued if s in history] == []


async def test_sign_in_and_consent_waits_expire(temporal_client, engine, tmp_path, test_ca):
    async with world(
        temporal_client,
        engine,
        tmp_path,
        test_ca,
        oauth_signin_wait=timedelta(seconds=2),
        oauth_admin_consent_wait=timedelta(seconds=3),
    ) as w:
        tenant = w.stack.tenant()
        idle = await w.connect(tenant, "microsoft", address())
        mailbox = address("northwind.example")
        w.microsoft.controls.mailbox = mailbox
        w.microsoft.controls.require_admin_consent = True
        consent = await w.connect(tenant, "microsoft", mailbox)
        await w.browse(consent["authorization_url"])
        idle_end = await w.wait_status(tenant, idle["id"], {"expired"})
        consent_end = await w.wait_status(tenant, consent["id"], {"expired"})
        stale = await w.browse(idle["authorization_url"])
        with Session(engine) as session:
            row = session.get(Connection, uuid.UUID(consent["id"]))
            leftovers = (row.oauth_flow_blob, row.oauth_callback_blob, row.oauth_state_nonce)

    assert "Nobody signed in within 2 seconds" in idle_end["last_error"]
    assert "No administrator approved Recruitmail within 3 seconds" in consent_end["last_error"]
    assert idle_end["authorization_url"] is None and consent_end["admin_consent_url"] is None
    # The spent link leads to the setup's page, which says that it ended, and why.
    assert stale.status_code == 200 and "This setup expired" in stale.text
    assert "Nobody signed in within 2 seconds" in stale.text
    assert leftovers == (None, None, None)


async def test_oauth_needs_configuration_and_refuses_smtp_fields(
    temporal_client, engine, tmp_path, test_ca
):
    async with world(
        temporal_client, engine, tmp_path, test_ca, google_client_id="", google_client_secret=""
    ) as w:
        tenant = w.stack.tenant()
        unconfigured = await w.stack.http.post(
            "/v1/connections",
            json={"kind": "google", "custom_address": address()},
            headers=tenant.headers,
        )
        with_smtp = await w.stack.http.post(
            "/v1/connections",
            json={
                "kind": "microsoft",
                "custom_address": address(),
                "smtp": {
                    "host": "smtp.example.com",
                    "port": 587,
                    "security": "starttls",
                    "username": "a@example.com",
                    "password": "x",
                },
            },
            headers=tenant.headers,
        )
        listed = await w.stack.http.get("/v1/connections", headers=tenant.headers)

    assert unconfigured.status_code == 422
    assert "RECRUITMAIL_GOOGLE_CLIENT_ID" in unconfigured.json()["detail"]
    assert with_smtp.status_code == 422 and "smtp" in with_smtp.json()["detail"]
    assert listed.json() == []


async def test_a_callback_that_cannot_reach_temporal_can_be_reloaded(
    temporal_client, engine, tmp_path, test_ca
):
    from api.app import create_app
    from tests.fakes.net import free_port

    async with world(temporal_client, engine, tmp_path, test_ca) as w:
        tenant = w.stack.tenant()
        mailbox = address()
        w.microsoft.controls.mailbox = mailbox
        created = await w.connect(tenant, "microsoft", mailbox)
        async with httpx.AsyncClient(verify=client_context(w.ca)) as browser:
            location = (await browser.get(created["authorization_url"])).headers["location"]
        # The same API, but Temporal is unreachable from it.
        cut_off = w.stack.settings.model_copy(
            update={"temporal_address": f"127.0.0.1:{free_port()}"}
        )
        app = create_app(cut_off, engine=engine)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url=API) as down:
            unavailable = await down.get(location.removeprefix(API))
        reloaded = await w.stack.http.get(location.removeprefix(API), follow_redirects=True)
        tested = await w.wait_status(tenant, created["id"], {"tested"})

    assert unavailable.status_code == 503 and "Reload" in unavailable.text
    assert reloaded.status_code == 200, reloaded.text  # the same link works once it is back
    assert tested["status"] == "tested"


async def test_large_files_on_a_live_microsoft_connection_ask_for_drafts_then_send_6_mb(
    temporal_client, engine, tmp_path, test_ca
):
    """A live Microsoft connection refuses a 6 MB message at once and says how to allow it;
    turning large files on asks the mailbox for Mail.ReadWrite alone while sending goes on;
    then the same file goes as a draft with an upload session. Google and SMTP get 422, another
    company 404."""
    async with world(temporal_client, engine, tmp_path, test_ca) as w:
        tenant, other = w.stack.tenant(), w.stack.tenant(name="Other")
        live = await connected(w, tenant, "microsoft", address())
        http = w.stack.http
        data = os.urandom(6_000_000)

        async def send_file() -> dict:
            upload = await http.post(
                "/v1/attachments",
                files={"file": ("Offer.pdf", data, "application/pdf")},
                headers=tenant.headers,
            )
            assert upload.status_code == 201, upload.text
            candidate = await w.stack.candidate(tenant)
            queued = await w.stack.send(
                tenant, candidate["id"], attachment_ids=[upload.json()["id"]]
            )
            return await w.stack.wait_for_status(tenant, queued["id"], {"sent", "failed"})

        refused = await send_file()
        url = f"/v1/connections/{live['id']}/large-files"
        foreign = await http.put(url, json={"enabled": True}, headers=other.headers)
        asked = await http.put(url, json={"enabled": True}, headers=tenant.headers)
        meanwhile = await w.stack.send_and_settle(tenant)
        await w.browse(asked.json()["authorization_url"])
        back = await w.wait_status(tenant, live["id"], {"active"}, timeout=60)
        sent = await send_file()
        google = await w.connect(other, "google", address("acme.example"))
        not_needed = await http.put(
            f"/v1/connections/{google['id']}/large-files",
            json={"enabled": True},
            headers=other.headers,
        )

    assert refused["status"] == "failed" and refused["attempts"] == 1, refused  # no retry
    assert "large-files" in refused["error"] and "Read and write mail" in refused["error"]
    assert foreign.status_code == 404
    assert asked.status_code == 200 and asked.json()["large_files"] is True
    assert "Mail.ReadWrite" in asked.json()["authorization_url"]
    assert meanwhile["status"] == "sent"  # the live connection kept sending
    assert back["large_files"] is True and back["status"] == "active"
    assert sent["status"] == "sent", sent
    [draft] = [item for item in w.microsoft.sent if item.get("via") == "draft"]
    assert data in message_from_bytes(draft["mime"]).get_payload()[-1].get_payload(decode=True)
    assert w.microsoft.uploaded and sum(w.microsoft.uploaded[-1]) == len(data)
    assert not_needed.status_code == 422 and "only Microsoft" in not_needed.text


async def test_at_most_four_requests_at_once_reach_one_microsoft_mailbox(
    temporal_client, engine, tmp_path, test_ca
):
    """Graph takes four requests at once per mailbox (MailboxConcurrency): twelve sends queued
    together reach the mailbox at most four at a time, through the database's leases (so
    across worker processes too), and all go."""
    async with world(temporal_client, engine, tmp_path, test_ca) as w:
        tenant = w.stack.tenant()
        mailbox = address()
        await connected(w, tenant, "microsoft", mailbox)
        w.microsoft.controls.send_delay = 0.4
        candidate = await w.stack.candidate(tenant)
        queued = [await w.stack.send(tenant, candidate["id"]) for _ in range(12)]
        done = [
            await w.stack.wait_for_status(tenant, q["id"], {"sent", "failed"}, timeout=90)
            for q in queued
        ]
    assert [m["status"] for m in done] == ["sent"] * 12
    assert 2 <= w.microsoft.most_at_once[mailbox.lower()] <= 4


async def test_application_sending_needs_no_user_and_outside_its_scope_says_how(
    temporal_client, engine, tmp_path, test_ca
):
    """Microsoft: the tenant's admin grants Recruitmail's application permission Mail.Send,
    scoped by RBAC for Applications to the recruiting mailbox. Switched to application sending,
    the connection sends with the application's own token, even once the user's sign-in is
    revoked; before the admin's grant covers the mailbox, a send fails at once with the
    PowerShell lines that fix it. Delegated is the default; Google gets 422, another company
    404."""
    async with world(temporal_client, engine, tmp_path, test_ca) as w:
        tenant, other = w.stack.tenant(), w.stack.tenant(name="Other")
        mailbox = address()
        live = await connected(w, tenant, "microsoft", mailbox)
        http = w.stack.http
        url = f"/v1/connections/{live['id']}/send-mode"
        foreign = await http.put(url, json={"mode": "application"}, headers=other.headers)
        unknown = await http.put(url, json={"mode": "sideways"}, headers=tenant.headers)
        switched = await http.put(url, json={"mode": "application"}, headers=tenant.headers)
        outside = await w.stack.send_and_settle(tenant)  # the admin has not granted it yet
        w.microsoft.controls.app_send["tenant-contoso.example"] = {mailbox}
        w.microsoft.revoke(mailbox)  # the user's sign-in is gone; the application's is not
        sent = await w.stack.send_and_settle(tenant)
        after = await w.connection(tenant, live["id"])
        back = await http.put(url, json={"mode": "delegated"}, headers=tenant.headers)
        google = await w.connect(other, "google", address("acme.example"))
        not_microsoft = await http.put(
            f"/v1/connections/{google['id']}/send-mode",
            json={"mode": "application"},
            headers=other.headers,
        )

    assert live["send_mode"] == "delegated"
    assert foreign.status_code == 404 and unknown.status_code == 422
    assert switched.status_code == 200 and switched.json()["send_mode"] == "application"
    assert outside["status"] == "failed" and outside["attempts"] == 1, outside  # no retry
    assert '-Role "Application Mail.Send"' in outside["error"]
    assert f"-Resource {mailbox}" in outside["error"] and "ms-client-id" in outside["error"]
    assert sent["status"] == "sent", sent
    [by_application] = [item for item in w.microsoft.deliveries if item.get("application")]
    assert by_application["address"] == mailbox
    assert after["status"] == "active"  # sending never needed the user's grant
    assert back.status_code == 200 and back.json()["send_mode"] == "delegated"
    assert not_microsoft.status_code == 422 and "only Microsoft" in not_microsoft.text
