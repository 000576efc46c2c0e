"""The pages a person opens, in a real browser: Debian's Chromium driven by Playwright, against
the API served by uvicorn on loopback, the real setup workflow, and the Microsoft and Google
fakes. The browser can reach 127.0.0.1 only.

Each page is checked at a 390 px and a 1,280 px viewport (no horizontal overflow, one h1,
labelled fields, AA contrast, a visible focus ring) and photographed into docs/screenshots/.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.message import EmailMessage
from urllib.parse import parse_qs, urlparse

from playwright.async_api import Browser, BrowserContext, Page, expect

from api.app import create_app
from tests.browser import DESKTOP, PHONE, browser, check_page, new_context, screenshot, served
from tests.fakes.net import free_port
from tests.oauth_world import World, address, world

WAIT = 60_000  # ms: a setup's step on a loaded two-core machine


@asynccontextmanager
async def in_a_browser(
    temporal_client, engine, tmp_path, test_ca, **overrides
) -> AsyncIterator[tuple[World, str, Browser]]:
    """The OAuth world, its API on a real loopback port, and Chromium."""
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    async with world(
        temporal_client, engine, tmp_path, test_ca, public_url=origin, **overrides
    ) as w:
        app = create_app(w.stack.settings, engine=engine, temporal_client=temporal_client)
        async with served(app, port), browser() as chromium:
            yield w, origin, chromium


async def both_viewports(page: Page, name: str) -> None:
    for viewport in (PHONE, DESKTOP):
        await page.set_viewport_size(viewport)
        await screenshot(page, name)
        await check_page(page)
    await page.set_viewport_size(PHONE)


async def heading(page: Page, text: str | re.Pattern) -> None:
    await expect(page.get_by_role("heading", level=1)).to_have_text(text, timeout=WAIT)


async def copy_from(page: Page, button: str) -> str:
    await page.get_by_role("button", name=button).click()
    await expect(page.get_by_role("status").filter(has_text="Copied.")).to_be_visible()
    return await page.evaluate("navigator.clipboard.readText()")


async def test_microsoft_journey_with_admin_consent_in_a_browser(
    temporal_client, engine, tmp_path, test_ca
):
    async with in_a_browser(temporal_client, engine, tmp_path, test_ca) as (w, origin, chromium):
        tenant = w.stack.tenant(name="Fabrikam Recruiting")
        mailbox = address("fabrikam.example")
        w.microsoft.controls.mailbox = mailbox
        w.microsoft.controls.require_admin_consent = True
        created = await w.connect(tenant, "microsoft", mailbox)

        requester = await new_context(chromium, PHONE, origin)
        page = await requester.new_page()
        first = await page.goto(created["authorization_url"])
        assert first and first.request.redirected_from
        callback = first.request.redirected_from.url
        await heading(page, "An administrator must approve Recruitmail")
        waiting = await w.connection(tenant, created["id"])
        link = waiting["admin_consent_url"]
        setup_url = page.url
        assert setup_url.startswith(f"{origin}/setup/{created['id']}?key=")
        assert waiting["setup_page_url"] == setup_url
        await expect(page.get_by_label("Approval link")).to_have_value(link)
        await expect(page.get_by_text(mailbox).first).to_be_visible()
        await expect(page.get_by_text("Fabrikam Recruiting").first).to_be_visible()
        await both_viewports(page, "microsoft-admin-must-approve")
        for viewport in (PHONE, DESKTOP):
            await page.set_viewport_size(viewport)
            await page.evaluate("navigator.clipboard.writeText('')")
            assert await copy_from(page, "Copy link") == link

        # A reload shows the same link: the page is bound to the setup, not the spent state.
        await page.reload()
        await heading(page, "An administrator must approve Recruitmail")
        await expect(page.get_by_label("Approval link")).to_have_value(link)
        await page.goto(callback)  # the callback URL again: its state is spent
        await heading(page, "An administrator must approve Recruitmail")
        assert page.url == setup_url

        # Email the link to the administrator through the platform transport.
        await page.get_by_label("Or email it to an administrator").fill("not an address")
        await page.get_by_role("button", name="Email the link").click()
        await expect(page.locator("#admin-email-error")).to_contain_text("not a valid")
        await page.get_by_label("Or email it to an administrator").fill("it@fabrikam.example")
        await page.get_by_role("button", name="Email the link").click()
        await expect(page.get_by_role("status").filter(has_text="Sent.")).to_be_visible(
            timeout=WAIT
        )
        await both_viewports(page, "microsoft-consent-link-emailed")
        [mail] = [m.message for m in w.platform.received if "it@fabrikam.example" in m.rcpt_tos]

        # The administrator opens the link (on a phone), approves, then opens it again.
        admin = await new_context(chromium, PHONE, origin)
        admin_page = await admin.new_page()
        await admin_page.goto(link)
        await heading(admin_page, "Consent granted")
        await both_viewports(admin_page, "microsoft-consent-granted")
        await admin_page.goto(link)
        await heading(admin_page, "Consent was already given")
        await expect(admin_page.get_by_text("Nothing more is needed from you")).to_be_visible()
        await both_viewports(admin_page, "microsoft-consent-already-given")
        back = await admin_page.get_by_role("link", name="Return to Recruitmail").get_attribute(
            "href"
        )
        after_consent = await w.connection(tenant, created["id"])

        # The requester reloads: a sign-in is due, and it finishes the setup.
        await page.reload()
        await heading(page, f"Sign in to connect {mailbox}")
        await both_viewports(page, "microsoft-sign-in-again")
        await page.get_by_role("link", name="Sign in with Microsoft").click()
        await heading(page, "Mailbox connected")
        await both_viewports(page, "microsoft-mailbox-connected")
        tested = await w.connection(tenant, created["id"])

    assert callback.startswith(f"{origin}/oauth/microsoft/callback?code=")
    assert _subject(mail).startswith("Approval needed: allow Recruitmail to send from")
    assert mailbox in _subject(mail) and link in mail.get_content()
    assert "Fabrikam Recruiting" in mail.get_content()
    assert back and back.startswith(f"{origin}/setup/{created['id']}?key=")
    assert after_consent["setup_state"] == "awaiting_authorization"
    assert after_consent["last_error"] is None  # no stale "an administrator must approve"
    assert tested["status"] == "tested" and tested["last_error"] is None


def _subject(mail: EmailMessage) -> str:
    return str(mail["Subject"])


async def test_google_blocked_journey_in_a_browser(temporal_client, engine, tmp_path, test_ca):
    product = "https://app.recruitmail.example/settings/mail"
    async with in_a_browser(temporal_client, engine, tmp_path, test_ca, app_url=product) as (
        w,
        origin,
        chromium,
    ):
        tenant = w.stack.tenant(name="Acme Talent")
        mailbox = address("acme.example")
        w.google.controls.mailbox = mailbox
        w.google.controls.block_app = True
        created = await w.connect(tenant, "google", mailbox)

        context = await new_context(chromium, PHONE, origin)
        page = await context.new_page()
        await page.goto(created["authorization_url"])
        await heading(page, "Blocked by your Google Workspace admin")
        text = await page.locator("main").inner_text()
        await both_viewports(page, "google-blocked-by-admin")
        assert await copy_from(page, "Copy client ID") == w.google.client_id
        back = await page.get_by_role("link", name="Return to Recruitmail").get_attribute("href")

        # The Workspace admin allows the app; the requester continues with the button.
        w.google.controls.block_app = False
        token = await page.locator("input[name=token]").input_value()
        await page.get_by_role(
            "button", name="My administrator has allowed Recruitmail: continue"
        ).click()
        await heading(page, "Mailbox connected")
        await both_viewports(page, "google-mailbox-connected")
        tested = await w.connection(tenant, created["id"])
        events = await w.stack.http.get("/v1/audit", headers=tenant.headers)

        # Submitting the spent button again changes nothing: it leads to the setup's page.
        again = await page.request.post(
            f"{origin}/setup/{created['id']}/consent-granted",
            form={"token": token},
            max_redirects=0,
        )

    assert "Security → Access and data control → API controls" in text
    assert w.google.client_id in text and "https://www.googleapis.com/auth/gmail.send" in text
    assert "/v1/" not in text and "POST" not in text  # steps for people, not API calls
    assert parse_qs(urlparse(back or "").query) == {"connection_id": [created["id"]]}
    assert (back or "").startswith(product)
    assert tested["status"] == "tested" and tested["last_error"] is None
    assert len(w.google.authorize_requests) == 2  # blocked, then the sign-in after "continue"
    assert again.status == 303
    assert again.headers["location"].startswith(f"{origin}/setup/{created['id']}?key=")
    actions = [e["action"] for e in events.json()]
    assert "connection.admin_consent_granted" in actions


async def test_landing_error_pages_and_offline_docs(temporal_client, engine, tmp_path, test_ca):
    async with in_a_browser(temporal_client, engine, tmp_path, test_ca) as (w, origin, chromium):
        context: BrowserContext = await new_context(chromium, DESKTOP, origin)
        page = await context.new_page()
        outside: list[str] = []
        page.on(
            "requestfailed",
            lambda request: (
                outside.append(f"{request.url} {request.failure}")
                if urlparse(request.url).hostname != "127.0.0.1"
                else None
            ),
        )

        landing = await page.goto(origin + "/")
        await heading(page, "Recruitmail API")
        await both_viewports(page, "landing")
        favicon = await page.request.get(origin + "/favicon.ico")
        icon = (favicon.status, favicon.headers["content-type"], await favicon.body())

        tenant = w.stack.tenant()
        created = await w.connect(tenant, "microsoft", address())
        bad_key = await page.goto(f"{origin}/setup/{created['id']}?key=forged")
        await heading(page, "This page is not available")
        await both_viewports(page, "error-page-not-available")
        forged = await page.goto(f"{origin}/oauth/microsoft/admin-consent?admin_consent=True")
        await heading(page, "This approval link cannot be used")
        declined = await page.goto(
            f"{origin}/oauth/microsoft/admin-consent?error=access_denied"
            "&error_description=The+admin+declined"
        )
        await heading(page, "Consent was not granted")
        await both_viewports(page, "microsoft-consent-declined")

        await page.goto(origin + "/docs")
        await expect(page.locator(".opblock").first).to_be_visible(timeout=WAIT)
        operations = await page.locator(".opblock").count()
        await page.goto(origin + "/redoc")
        await expect(page.locator("[data-section-id^='operation/']").first).to_be_attached(
            timeout=WAIT
        )
        redoc_operations = await page.locator("[data-section-id^='operation/']").count()

    assert landing and landing.status == 200
    assert icon[:2] == (200, "image/svg+xml") and b"<svg" in icon[2]
    assert bad_key and bad_key.status == 404
    assert forged and forged.status == 400
    assert declined and declined.status == 400
    assert operations >= 20 and redoc_operations >= 20
    # Nothing left for outside 127.0.0.1: ReDoc's decorative logo is refused by the docs'
    # own Content-Security-Policy (failure "csp"), before the test's network block is reached.
    assert [attempt for attempt in outside if not attempt.endswith(" csp")] == []


async def test_setup_page_needs_its_key_and_shows_no_other_tenants_setup(
    temporal_client, engine, tmp_path, test_ca
):
    async with world(temporal_client, engine, tmp_path, test_ca) as w:
        first, second = w.stack.tenant(), w.stack.tenant()
        mine = await w.connect(first, "microsoft", address())
        theirs = await w.connect(second, "microsoft", address())
        key = parse_qs(urlparse(mine["setup_page_url"]).query)["key"][0]
        own = await w.stack.http.get(f"/setup/{mine['id']}?key={key}")
        swapped = await w.stack.http.get(f"/setup/{theirs['id']}?key={key}")
        keyless = await w.stack.http.get(f"/setup/{theirs['id']}")
        emailed = await w.stack.http.post(
            f"/setup/{theirs['id']}/consent-request",
            content=f"key={key}&email=x%40example.com",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )

    assert own.status_code == 200 and mine["custom_address"] in own.text
    for answer in (swapped, keyless, emailed):
        assert answer.status_code == 404 and theirs["custom_address"] not in answer.text
    assert own.headers["referrer-policy"] == "no-referrer"
    assert "default-src 'self'" in own.headers["content-security-policy"]
    assert len(w.platform.received) == 0


def test_a_setup_page_key_is_stable_and_outlives_a_late_reconnect(tmp_path):
    from datetime import timedelta

    from api.rendering import _window, page_key, page_key_valid
    from core.models import Connection, utcnow
    from tests.helpers import test_settings

    settings = test_settings(tmp_path)
    fresh = Connection(company_id=uuid.uuid4(), kind="google", custom_address="a@example.com")
    window = timedelta(seconds=_window(settings))
    # Reconnected long after creation: two and a half windows old.
    old = Connection(
        company_id=uuid.uuid4(),
        kind="google",
        custom_address="b@example.com",
        created_at=utcnow() - 2.5 * window,
    )

    assert page_key(settings, fresh) == page_key(settings, fresh)
    assert page_key_valid(settings, fresh.id, page_key(settings, fresh))
    assert page_key_valid(settings, old.id, page_key(settings, old))
    assert not page_key_valid(settings, fresh.id, page_key(settings, old))
