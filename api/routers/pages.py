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
from typing import Annotated
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from temporalio.client import WorkflowFailureError

from api.rendering import STATIC_DIR, back_link, error_page, page_key_valid, render
from api.runs import start_run
from api.services import setup_page as setup_service
from api.services.setup_page import setup_view, shown_state
from contracts.connections.admin_consent import AdminConsentMailInput, AdminConsentMailResult
from core.connections.admin_consent import admin_consent_subject
from core.mail import normalize_address
from core.models import Connection
from core.statuses import (
    KIND_LABELS,
    OAUTH_KINDS,
    ConnectionKind,
    ConnectionStatus,
)
from workflows.connections.admin_consent import AdminConsentMailWorkflow

router = APIRouter(include_in_schema=False)

S = ConnectionStatus
# How many times one setup's consent request may be emailed: enough for a few administrators,
# not enough to make the form a way to send mail to strangers.
MAX_CONSENT_REQUESTS = 5
# How long the page waits for the platform transport before it says "on its way".
SEND_WAIT_SECONDS = 10.0

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
    loaded = await run_in_threadpool(setup_service.load, request.app.state.engine, connection_id)
    if loaded is None or loaded[0].kind not in OAUTH_KINDS:
        return _not_found(request)
    connection, company = loaded
    view = setup_view(settings, connection, company)
    shown = None
    if notice in _NOTICES:
        tone, text = _NOTICES[notice]
        subject = admin_consent_subject(connection)
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
        deliverability=connection.deliverability,
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


@router.post("/setup/{connection_id}/consent-request", response_class=HTMLResponse)
async def email_consent_request(request: Request, connection_id: uuid.UUID) -> Response:
    """Email the approval link (or Google's steps) to an administrator, via the platform."""
    form = await read_form(request)
    key, typed = form.get("key", ""), form.get("email", "").strip()
    settings = request.app.state.settings
    if not page_key_valid(settings, connection_id, key):
        return _not_found(request)
    engine = request.app.state.engine
    loaded = await run_in_threadpool(setup_service.load, engine, connection_id)
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
    if not error and await run_in_threadpool(
        setup_service.admin_consent_requests, engine, connection
    ) >= (MAX_CONSENT_REQUESTS):
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
    request_id = await run_in_threadpool(
        setup_service.record_request, engine, connection, recipient
    )
    outcome, reason = await _send_request(request, connection, request_id)
    query = {"key": key, "notice": outcome}
    if reason:
        return await _setup_page(request, connection_id, key, notice=outcome, reason=reason)
    return RedirectResponse(f"/setup/{connection_id}?{urlencode(query)}", status_code=303)


async def _send_request(
    request: Request, connection: Connection, request_id: str
) -> tuple[str, str]:
    """Start the mail's run and wait a little for it: sent, sending, or not-sent with why."""
    settings = request.app.state.settings
    try:
        client = await request.app.state.temporal.client()
        workflow_id = f"consent-request-{connection.id}-{uuid.uuid4().hex[:8]}"
        await start_run(
            client,
            AdminConsentMailWorkflow.run,
            AdminConsentMailInput(
                str(connection.id), str(connection.company_id), request_id=request_id
            ),
            workflow_id=workflow_id,
            task_queue=settings.task_queue,
            company_id=str(connection.company_id),
            status="sending",
            connection_id=str(connection.id),
            provider=connection.kind,
        )
        handle = client.get_workflow_handle(workflow_id, result_type=AdminConsentMailResult)
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
