"""Browser redirect targets of the OAuth setups: the sign-in callback, Microsoft's
admin-consent redirect, and the "my administrator has allowed it" button of Google's page.

The `state` parameter is signed, bound to one connection, and single-use: its nonce is
consumed in the database before anything else happens, so a forged state gets an error page
and changes nothing. A genuine state that was already spent (a reload, the back button, a
second click on a consent link) leads to where the setup stands now. The authorization code
is stored encrypted; only the nonce travels to the workflow.

Once the callback is handled, the browser is sent on (303) to the setup's page
(api/routers/pages.py), which is bound to the setup rather than to the spent state: a reload
shows the same consent link while the setup waits.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from temporalio.service import RPCError

from api.deps import SettingsDep
from api.rendering import back_link, error_page, render, status_page_url
from api.routers.pages import read_form
from api.runs import nudge_mailbox_sync
from api.services import oauth as service
from api.services.connections import run_update
from api.services.setup_page import CONSENT_FORM
from contracts.connections.oauth import AdminConsentInput, CallbackInput
from core.models import Connection
from core.statuses import OAUTH_KINDS, SETUP_STATUSES, ConnectionStatus, InboundPath
from workflows.connections.oauth import OAuthConnectionSetupWorkflow

log = logging.getLogger(__name__)

router = APIRouter(tags=["oauth"])


# What each kind of state is called on a page.
A = TypeVar("A")


def _refused(request: Request, purpose: str, reason: str) -> HTMLResponse:
    return error_page(
        request,
        f"This {service.LINK_NAMES.get(purpose, 'link')} cannot be used",
        f"{reason} Nothing was changed.",
        "Open the setup again from Recruitmail: its connection settings show the link that "
        "is valid now.",
    )


def _unavailable(request: Request) -> HTMLResponse:
    return error_page(
        request,
        "Please try again in a moment",
        "Recruitmail is briefly unavailable, so nothing was done yet.",
        "Reload this page in a moment; the link still works.",
        status_code=503,
    )


async def _send(
    request: Request,
    connection: Connection,
    update: Callable[[Any, A], Awaitable[object]],
    arg: A,
) -> object:
    try:
        client = await request.app.state.temporal.client()
    except Exception:
        raise HTTPException(503, "Recruitmail is briefly unavailable; reload this page.") from None
    settings = request.app.state.settings
    return await run_update(client, connection, settings.connection_test_wait, update, arg)


async def _deliver(
    request: Request,
    connection: Connection,
    nonce: str,
    update: Callable[[Any, A], Awaitable[object]],
    arg: A,
) -> HTMLResponse | None:
    """Hand the spent state's step to the setup's run. None when it was delivered; otherwise
    the page to show. When the run could not be reached, the state is given back, so a reload
    of the same link works once Recruitmail is back."""
    try:
        await _send(request, connection, update, arg)
    except (HTTPException, RPCError) as exc:
        if isinstance(exc, RPCError) or exc.status_code == 503:
            await run_in_threadpool(service.unspend, request.app.state.engine, connection.id, nonce)
            return _unavailable(request)
        return error_page(
            request,
            "The setup has moved on",
            str(exc.detail),
            "Return to Recruitmail to see where the setup stands.",
            status_code=409,
            back=back_link(request.app.state.settings, connection),
        )
    return None


def _to_setup_page(settings, connection: Connection) -> RedirectResponse:
    return RedirectResponse(status_page_url(settings, connection), status_code=303)


@router.get("/oauth/microsoft/admin-consent", response_class=HTMLResponse)
async def microsoft_admin_consent(
    request: Request,
    settings: SettingsDep,
    state: Annotated[str, Query()] = "",
    admin_consent: Annotated[str, Query()] = "",
    error: Annotated[str, Query()] = "",
    error_description: Annotated[str, Query()] = "",
) -> HTMLResponse:
    """Where Microsoft sends the administrator after the admin-consent page."""
    if error or admin_consent.lower() != "true":
        return error_page(
            request,
            "Consent was not granted",
            error_description or error or "Microsoft did not confirm the consent.",
            "Nothing was changed: the setup keeps waiting for an administrator, and the same "
            "approval link still works. Open it again and choose Accept to approve.",
        )
    engine = request.app.state.engine
    try:
        connection, nonce = await run_in_threadpool(
            service.consume, engine, settings, state, "admin-consent", "microsoft", None
        )
    except service.StateRefused as exc:
        return _refused(request, "admin-consent", str(exc))
    except service.Spent as spent:
        return await run_in_threadpool(_admin_consent_spent, request, spent.connection)
    refused = await _deliver(
        request,
        connection,
        nonce,
        OAuthConnectionSetupWorkflow.admin_consent_granted,
        AdminConsentInput(source="microsoft-admin-consent"),
    )
    if refused is not None:
        return refused
    return await run_in_threadpool(_admin_consent_page, request, connection, "Consent granted")


def _admin_consent_page(request: Request, connection: Connection, title: str) -> HTMLResponse:
    company = service.company_of(request.app.state.engine, connection)
    return render(
        request,
        "message.html",
        title=title,
        tone="ok",
        lead=(
            f"Thank you. Recruitmail may now send {company.name}'s candidate email from "
            f"{connection.custom_address}."
        ),
        next_step=(
            "Nothing more is needed from you. The person connecting the mailbox signs in once "
            "more from Recruitmail's setup page to finish; the test then runs by itself."
        ),
        back=back_link(request.app.state.settings, connection),
    )


def _admin_consent_spent(request: Request, connection: Connection) -> HTMLResponse:
    """A second click on the approval link: say whether consent was given, and what is next."""
    state = connection.setup_state or connection.status
    if state == ConnectionStatus.AWAITING_ADMIN_CONSENT:
        return _refused(
            request, "admin-consent", "A newer approval link replaced this one for the setup."
        )
    if state in SETUP_STATUSES or state == ConnectionStatus.ACTIVE:
        return _admin_consent_page(request, connection, "Consent was already given")
    return error_page(
        request,
        "This setup has ended",
        connection.last_error or f"The setup of {connection.custom_address} is {state}.",
        "Nothing was changed. Start a new connection from Recruitmail if the mailbox should "
        "still be connected.",
        status_code=410,
        back=back_link(request.app.state.settings, connection),
    )


@router.get("/oauth/{provider}/callback", response_class=HTMLResponse)
async def oauth_callback(
    provider: str, request: Request, settings: SettingsDep, state: Annotated[str, Query()] = ""
) -> Response:
    """Where the provider sends the browser after sign-in, with a code or an error. Once the
    setup has the answer, the browser goes on to the setup's page."""
    if provider not in OAUTH_KINDS:
        return _refused(request, "signin", f"Unknown provider {provider!r}.")
    query = dict(request.query_params.items())
    engine = request.app.state.engine
    try:
        connection, nonce = await run_in_threadpool(
            service.consume, engine, settings, state, "signin", provider, query
        )
    except service.StateRefused as exc:
        return _refused(request, "signin", str(exc))
    except service.Spent as spent:  # a reload or the back button: show where the setup stands
        return _to_setup_page(settings, spent.connection)
    refused = await _deliver(
        request,
        connection,
        nonce,
        OAuthConnectionSetupWorkflow.complete_authorization,
        CallbackInput(nonce=nonce),
    )
    if refused is None and InboundPath.MAILBOX_SYNC in (connection.inbound_paths or []):
        await _nudge_sync(request, str(connection.id))
    return refused or _to_setup_page(settings, connection)


async def _nudge_sync(request: Request, connection_id: str) -> None:
    """The sign-in may have granted the read permission: the sync run looks again now rather
    than at its next poll (which it would do anyway)."""
    try:
        client = await request.app.state.temporal.client()
        await nudge_mailbox_sync(client, connection_id, "grant")
    except Exception:
        log.info("mailbox sync of %s not nudged; it reads at its next poll", connection_id)


@router.post("/setup/{connection_id}/consent-granted", response_class=HTMLResponse)
async def consent_granted_button(
    request: Request, connection_id: uuid.UUID, settings: SettingsDep
) -> Response:
    """Google's page: the requesting admin says the Workspace admin has allowed the app. The
    same operation as POST /v1/connections/{id}/admin-consent-granted, authorised by the
    single-use token in the page; then on to a new sign-in."""
    form = await read_form(request)
    engine = request.app.state.engine
    try:
        connection, nonce = await run_in_threadpool(
            service.consume, engine, settings, form.get("token", ""), CONSENT_FORM, "google", None
        )
        if connection.id != connection_id:  # give the other setup its token back
            await run_in_threadpool(service.unspend, engine, connection.id, nonce)
            raise service.StateRefused("This button belongs to another setup.")
    except service.StateRefused as exc:
        return _refused(request, CONSENT_FORM, str(exc))
    except service.Spent as spent:  # a second click: the setup went on already
        return _to_setup_page(settings, spent.connection)
    refused = await _deliver(
        request,
        connection,
        nonce,
        OAuthConnectionSetupWorkflow.admin_consent_granted,
        AdminConsentInput(source="admin-page"),
    )
    if refused is not None:
        return refused
    await run_in_threadpool(service.audit_admin_consent, engine, connection)
    fresh = await run_in_threadpool(service.fresh, engine, connection.id)
    if fresh.setup_state == ConnectionStatus.AWAITING_AUTHORIZATION and fresh.authorization_url:
        return RedirectResponse(fresh.authorization_url, status_code=303)
    return _to_setup_page(settings, connection)
