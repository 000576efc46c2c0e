"""Pages a person opens in a browser: the landing page, and a connection's setup page.

The setup page is where the OAuth callback leads. It is bound to the setup through a signed
page key, so reloading it, or forwarding it, shows where the setup stands now: the consent
link while an administrator is awaited (with a copy button and a form that emails it), the
Google Workspace steps with a button that continues once they are done, the sign-in button
when a sign-in is due, the test's steps once connected.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from sqlmodel import Session, col, func, select
from temporalio.client import WorkflowFailureError

from api.pages import STATIC_DIR, back_link, error_page, page_key_valid, render
from core.audit import record_connection
from core.consent_mail import consent_request_subject
from core.mail import normalize_address
from core.models import AuditEvent, Company, Connection
from core.security import secret_box
from core.settings import Settings
from core.statuses import (
    KIND_LABELS,
    OAUTH_KINDS,
    SETUP_STATUSES,
    ConnectionKind,
    ConnectionStatus,
)
from workflows.client import start_run
from workflows.consent_request import (
    ConsentRequestInput,
    ConsentRequestMailWorkflow,
    ConsentRequestResult,
)

router = APIRouter(include_in_schema=False)

S = ConnectionStatus
# How many times one setup's consent request may be emailed: enough for a few administrators,
# not enough to make the form a way to send mail to strangers.
MAX_CONSENT_REQUESTS = 5
# How long the page waits for the platform transport before it says "on its way".
SEND_WAIT_SECONDS = 10.0
CONSENT_FORM = "consent-form"

_NOTICES = {
    "sent": ("ok", "Sent. Ask the administrator to look for the subject “{subject}”."),
    "sending": (
        "info",
        "The message is on its way; the mail service is slow to answer. If it does not arrive "
        "in a few minutes, copy the link below and send it yourself.",
    ),
    "not-sent": (
        "error",
        "Recruitmail could not send the message: {reason} Copy the link below and send it "
        "yourself, or try again in a few minutes.",
    ),
}


@router.get("/", response_class=HTMLResponse)
async def landing(request: Request) -> HTMLResponse:
    return render(request, "landing.html", title="Recruitmail API")


@router.get("/favicon.ico")
async def favicon() -> FileResponse:
    return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml")


@dataclass
class SetupView:
    """What the setup page shows for a connection in its current state."""

    title: str
    tone: str  # ok, info, warn, error
    lead: str
    next_step: str
    reason: str | None = None
    refresh: int | None = None
    sign_in_url: str | None = None
    consent_link: str | None = None
    google_steps: list[str] = field(default_factory=list)
    consent_token: str | None = None
    checks: list[dict[str, Any]] = field(default_factory=list)


def shown_state(connection: Connection) -> str:
    """A setup under way speaks for the connection (a reconnect of a live one included);
    otherwise its status does."""
    if connection.setup_state in SETUP_STATUSES:
        return connection.setup_state
    return connection.status


def setup_view(settings: Settings, connection: Connection, company: Company) -> SetupView:
    label = KIND_LABELS[ConnectionKind(connection.kind)]
    address = connection.custom_address
    state = shown_state(connection)
    checks = list(connection.steps or [])
    if state == S.AWAITING_AUTHORIZATION:
        return SetupView(
            f"Sign in to connect {address}",
            "warn" if connection.last_error else "info",
            f"Sign in to {label} as {address} itself, so that Recruitmail can send "
            f"{company.name}'s candidate email from it.",
            "Choose “Sign in” and use the mailbox's own account; shared mailboxes and other "
            "accounts are not supported. The test runs by itself right after.",
            reason=connection.last_error,
            sign_in_url=connection.authorization_url,
        )
    if state == S.AUTHORIZING:
        return SetupView(
            "Finishing the sign-in…",
            "info",
            f"{label} sent you back to Recruitmail; the sign-in of {address} is being completed.",
            "This page updates by itself in a moment.",
            refresh=2,
        )
    if state == S.AWAITING_ADMIN_CONSENT:
        return _consent_view(settings, connection, label)
    if state in (S.AUTHORIZED, S.TESTING, S.PENDING):
        return SetupView(
            "Mailbox connected: testing it",
            "info",
            f"Signed in to {label} as {connection.display_mailbox or address}. Recruitmail "
            "is sending a test message through it and waiting for it to come back.",
            "This page updates by itself when the test has run.",
            refresh=3,
            checks=checks,
        )
    if state == S.TESTED:
        return SetupView(
            "Mailbox connected",
            "ok",
            f"Signed in to {label} as {connection.display_mailbox or address}, and the test "
            "message went out.",
            "Return to Recruitmail and activate the connection: from then on, candidate "
            f"email of {company.name} is sent from {address}.",
            checks=checks,
        )
    if state == S.TEST_FAILED:
        return SetupView(
            "Connected, but the test failed",
            "warn",
            f"Signed in to {label} as {connection.display_mailbox or address}, but the test "
            "message did not go through.",
            "Fix what the failed check below says, then test again from Recruitmail.",
            reason=connection.last_error,
            checks=checks,
        )
    if state == S.ACTIVE:
        return SetupView(
            "Connected and active",
            "ok",
            f"Recruitmail sends {company.name}'s candidate email from {address} through {label}.",
            "Nothing more to do here. Return to Recruitmail to see its messages and settings.",
            checks=checks,
        )
    if state == S.NEEDS_REAUTH:
        return SetupView(
            "The mailbox needs a new sign-in",
            "warn",
            f"{label} refused Recruitmail's access to {address}, so candidate email from it "
            "is on hold.",
            "Return to Recruitmail and choose Reconnect for this mailbox.",
            reason=connection.last_error,
        )
    ended: dict[str, str] = {
        S.FAILED: "The mailbox was not connected",
        S.EXPIRED: "This setup expired",
        S.CANCELLED: "This setup was cancelled",
        S.DISABLED: "This connection is no longer used",
    }
    return SetupView(
        ended.get(state, f"This setup is {state}"),
        "error" if state == S.FAILED else "warn",
        f"Nothing is sent from {address} through this connection.",
        "Return to Recruitmail and connect the mailbox again to start a new setup.",
        reason=connection.last_error,
    )


def _consent_view(settings: Settings, connection: Connection, label: str) -> SetupView:
    domain = connection.custom_address.rpartition("@")[2]
    wait = settings.oauth_admin_consent_wait.days or 1
    if connection.admin_consent_url:
        return SetupView(
            "An administrator must approve Recruitmail",
            "warn",
            f"{label} asks an administrator of {domain} to approve Recruitmail before "
            f"{connection.custom_address} can send through it. The setup waits for up to "
            f"{wait} days.",
            "Send the approval link above to an administrator. Once they choose Accept, "
            "reload this page: you will be asked to sign in once more, and the test runs by "
            "itself.",
            reason=connection.last_error,
            consent_link=connection.admin_consent_url,
        )
    token = None
    if connection.oauth_state_nonce:
        token = secret_box(settings).sign(
            {"c": str(connection.id), "p": CONSENT_FORM, "n": connection.oauth_state_nonce},
            settings.oauth_admin_consent_wait.total_seconds() + 86400,
        )
    lines = (connection.admin_instructions or "").splitlines()
    steps = [line.split(". ", 1)[1] for line in lines if line[:1].isdigit() and ". " in line]
    return SetupView(
        "Blocked by your Google Workspace admin",
        "warn",
        f"Google Workspace does not let {connection.custom_address} sign in to Recruitmail "
        f"yet: an administrator of {domain} must allow the app first. The setup waits for up "
        f"to {wait} days.",
        "Once your administrator has done the steps above, choose “Continue”: you sign in "
        "once more, and the test runs by itself.",
        reason=connection.last_error,
        google_steps=steps,
        consent_token=token,
    )


def _load(engine, connection_id: uuid.UUID) -> tuple[Connection, Company] | None:
    with Session(engine, expire_on_commit=False) as session:
        connection = session.get(Connection, connection_id)
        if connection is None:
            return None
        company = session.get(Company, connection.company_id)
        return (connection, company) if company else None


def _not_found(request: Request) -> HTMLResponse:
    return error_page(
        request,
        "This page is not available",
        "The link to this setup page is incomplete, was changed, or has expired.",
        "Open the setup again from Recruitmail: its connection settings link here.",
        status_code=404,
    )


async def _setup_page(
    request: Request,
    connection_id: uuid.UUID,
    key: str,
    *,
    notice: str = "",
    reason: str = "",
    email_value: str = "",
    email_error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    settings = request.app.state.settings
    if not page_key_valid(settings, connection_id, key):
        return _not_found(request)
    loaded = await run_in_threadpool(_load, request.app.state.engine, connection_id)
    if loaded is None or loaded[0].kind not in OAUTH_KINDS:
        return _not_found(request)
    connection, company = loaded
    view = setup_view(settings, connection, company)
    shown = None
    if notice in _NOTICES:
        tone, text = _NOTICES[notice]
        subject = consent_request_subject(connection)
        shown = {"tone": tone, "text": text.format(subject=subject, reason=reason)}
    return render(
        request,
        "setup.html",
        status_code,
        title=view.title,
        refresh=view.refresh,
        view=view,
        connection=connection,
        company=company,
        provider=KIND_LABELS[ConnectionKind(connection.kind)],
        status_label=shown_state(connection).replace("_", " "),
        key=key,
        notice=shown,
        email_value=email_value,
        email_error=email_error,
        hosted=settings.hosted_address(company.slug),
        client_id=settings.google_client_id,
        back=back_link(settings, connection),
        has_app=bool(settings.app_url),
        self_url=f"/setup/{connection.id}?{urlencode({'key': key})}",
    )


@router.get("/setup/{connection_id}", response_class=HTMLResponse)
async def setup_page(
    request: Request,
    connection_id: uuid.UUID,
    key: Annotated[str, Query()] = "",
    notice: Annotated[str, Query()] = "",
) -> HTMLResponse:
    """Where a connection's setup stands, for the admin who connects it (no bearer token: the
    signed key in the link is the permission)."""
    return await _setup_page(request, connection_id, key, notice=notice)


async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded form, already bounded by the body limit."""
    if request.headers.get("content-type", "").split(";")[0] != "application/x-www-form-urlencoded":
        return {}
    body = await request.body()
    try:
        return {k: v[0] for k, v in parse_qs(body.decode("utf-8")).items()}
    except UnicodeDecodeError:
        return {}


def _consent_requests(engine, connection: Connection) -> int:
    with Session(engine) as session:
        return session.exec(
            select(func.count())
            .select_from(AuditEvent)
            .where(
                AuditEvent.target == f"connection:{connection.id}",
                col(AuditEvent.action) == "connection.consent_request_asked",
            )
        ).one()


def _record_request(engine, connection: Connection, recipient: str) -> None:
    with Session(engine) as session:
        record_connection(
            session, connection, None, "connection.consent_request_asked", to=recipient
        )
        session.commit()


@router.post("/setup/{connection_id}/consent-request", response_class=HTMLResponse)
async def email_consent_request(request: Request, connection_id: uuid.UUID) -> Response:
    """Email the approval link (or Google's steps) to an administrator, via the platform."""
    form = await read_form(request)
    key, typed = form.get("key", ""), form.get("email", "").strip()
    settings = request.app.state.settings
    if not page_key_valid(settings, connection_id, key):
        return _not_found(request)
    engine = request.app.state.engine
    loaded = await run_in_threadpool(_load, engine, connection_id)
    if loaded is None:
        return _not_found(request)
    connection = loaded[0]
    back_to_page = f"/setup/{connection_id}?{urlencode({'key': key})}"
    if connection.setup_state != S.AWAITING_ADMIN_CONSENT:
        return RedirectResponse(back_to_page, status_code=303)
    try:
        recipient = normalize_address(typed) if typed else ""
    except ValueError as exc:
        error = f"{exc}."
    else:
        error = "" if recipient else "Type the administrator's email address."
    if not error and await run_in_threadpool(_consent_requests, engine, connection) >= (
        MAX_CONSENT_REQUESTS
    ):
        error = (
            f"The link was already emailed {MAX_CONSENT_REQUESTS} times for this setup. Copy "
            "it and send it yourself."
        )
    if error:
        return await _setup_page(
            request,
            connection_id,
            key,
            email_value=typed[:254],
            email_error=error,
            status_code=400,
        )
    await run_in_threadpool(_record_request, engine, connection, recipient)
    outcome, reason = await _send_request(request, connection, recipient)
    query = {"key": key, "notice": outcome}
    if reason:
        return await _setup_page(request, connection_id, key, notice=outcome, reason=reason)
    return RedirectResponse(f"/setup/{connection_id}?{urlencode(query)}", status_code=303)


async def _send_request(
    request: Request, connection: Connection, recipient: str
) -> tuple[str, str]:
    """Start the mail's run and wait a little for it: sent, sending, or not-sent with why."""
    settings = request.app.state.settings
    try:
        client = await request.app.state.temporal.client()
        workflow_id = f"consent-request-{connection.id}-{uuid.uuid4().hex[:8]}"
        await start_run(
            client,
            ConsentRequestMailWorkflow.run,
            ConsentRequestInput(str(connection.id), str(connection.company_id), recipient),
            workflow_id=workflow_id,
            task_queue=settings.task_queue,
            company_id=str(connection.company_id),
            status="sending",
            connection_id=str(connection.id),
            provider=connection.kind,
        )
        handle = client.get_workflow_handle(workflow_id, result_type=ConsentRequestResult)
        result = await asyncio.wait_for(handle.result(), SEND_WAIT_SECONDS)
    except TimeoutError:
        return "sending", ""
    except WorkflowFailureError:
        return "not-sent", "its run failed."
    except Exception:
        return "not-sent", "Recruitmail is briefly unavailable."
    if result.sent:
        return "sent", ""
    return "not-sent", result.error or "the mail service refused it."
