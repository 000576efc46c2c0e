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
from typing import Annotated, Any, TypeVar, cast

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import CursorResult, Engine, update
from sqlmodel import Session, col
from temporalio.service import RPCError

from api.deps import SettingsDep
from api.rendering import back_link, error_page, render, status_page_url
from api.routers.pages import read_form
from api.services.connections import run_update
from api.services.setup_page import CONSENT_FORM
from contracts.oauth import CallbackInput, ConsentInput
from core.audit import record_connection
from core.db import get_or_fail
from core.models import Company, Connection
from core.security import secret_box
from core.statuses import OAUTH_KINDS, SETUP_STATUSES, ConnectionStatus, InboundPath
from workflows.client import nudge_mailbox_sync
from workflows.oauth_setup import OAuthConnectionSetupWorkflow

log = logging.getLogger(__name__)

router = APIRouter(tags=["oauth"])


# What each kind of state is called on a page.
A = TypeVar("A")
_LINK_NAMES = {"signin": "sign-in link", "admin-consent": "approval link", CONSENT_FORM: "button"}


class Refused(ValueError):
    """The state is not one we issued for this step and provider."""


class Spent(Exception):
    """A genuine state whose nonce was already used: the setup has moved on."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection


def _refused(request: Request, purpose: str, reason: str) -> HTMLResponse:
    return error_page(
        request,
        f"This {_LINK_NAMES.get(purpose, 'link')} cannot be used",
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


def _consume(
    engine, settings, state: str, purpose: str, provider: str, callback: dict | None
) -> tuple[Connection, str]:
    """Verify the state and spend its nonce, storing the callback (encrypted) in the same write.

    Raises Refused for a state we did not issue for this step, Spent for one already used."""
    name = _LINK_NAMES.get(purpose, "link")
    box = secret_box(settings)
    try:
        claims = box.verify(state)
        connection_id = uuid.UUID(str(claims["c"]))
    except (ValueError, KeyError) as exc:
        raise Refused(f"This {name} is not one Recruitmail issued, or it expired.") from exc
    if claims.get("p") != purpose:
        raise Refused(f"This {name} was issued for another step of the setup.")
    with Session(engine, expire_on_commit=False) as session:
        connection = session.get(Connection, connection_id)
        if connection is None or connection.kind != provider:
            raise Refused(f"This {name} does not belong to a setup of this provider.")
        values: dict[str, object] = {"oauth_state_nonce": None}
        if callback is not None:
            values["oauth_callback_blob"] = box.seal_json(connection_id, callback)
        spent = session.execute(
            update(Connection)
            .where(
                col(Connection.id) == connection_id,
                col(Connection.oauth_state_nonce) == str(claims["n"]),
            )
            .values(**values)
        )
        session.commit()
        session.refresh(connection)
        if cast(CursorResult[Any], spent).rowcount != 1:
            raise Spent(connection)
        return connection, str(claims["n"])


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
            await run_in_threadpool(_unspend, request.app.state.engine, connection.id, nonce)
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
            _consume, engine, settings, state, "admin-consent", "microsoft", None
        )
    except Refused as exc:
        return _refused(request, "admin-consent", str(exc))
    except Spent as spent:
        return await run_in_threadpool(_consent_spent, request, spent.connection)
    refused = await _deliver(
        request,
        connection,
        nonce,
        OAuthConnectionSetupWorkflow.admin_consent_granted,
        ConsentInput(source="microsoft-admin-consent"),
    )
    if refused is not None:
        return refused
    return await run_in_threadpool(_consent_page, request, connection, "Consent granted")


def _company(engine: Engine, connection: Connection) -> Company:
    with Session(engine) as session:
        return get_or_fail(session, Company, connection.company_id)


def _consent_page(request: Request, connection: Connection, title: str) -> HTMLResponse:
    company = _company(request.app.state.engine, connection)
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


def _consent_spent(request: Request, connection: Connection) -> HTMLResponse:
    """A second click on the approval link: say whether consent was given, and what is next."""
    state = connection.setup_state or connection.status
    if state == ConnectionStatus.AWAITING_ADMIN_CONSENT:
        return _refused(
            request, "admin-consent", "A newer approval link replaced this one for the setup."
        )
    if state in SETUP_STATUSES or state == ConnectionStatus.ACTIVE:
        return _consent_page(request, connection, "Consent was already given")
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
            _consume, engine, settings, state, "signin", provider, query
        )
    except Refused as exc:
        return _refused(request, "signin", str(exc))
    except Spent as spent:  # a reload or the back button: show where the setup stands
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
            _consume, engine, settings, form.get("token", ""), CONSENT_FORM, "google", None
        )
        if connection.id != connection_id:  # give the other setup its token back
            await run_in_threadpool(_unspend, engine, connection.id, nonce)
            raise Refused("This button belongs to another setup.")
    except Refused as exc:
        return _refused(request, CONSENT_FORM, str(exc))
    except Spent as spent:  # a second click: the setup went on already
        return _to_setup_page(settings, spent.connection)
    refused = await _deliver(
        request,
        connection,
        nonce,
        OAuthConnectionSetupWorkflow.admin_consent_granted,
        ConsentInput(source="admin-page"),
    )
    if refused is not None:
        return refused
    await run_in_threadpool(_audit_consent, engine, connection)
    fresh = await run_in_threadpool(_fresh, engine, connection.id)
    if fresh.setup_state == ConnectionStatus.AWAITING_AUTHORIZATION and fresh.authorization_url:
        return RedirectResponse(fresh.authorization_url, status_code=303)
    return _to_setup_page(settings, connection)


def _audit_consent(engine: Engine, connection: Connection) -> None:
    with Session(engine) as session:
        record_connection(
            session, connection, None, "connection.admin_consent_granted", source="admin-page"
        )
        session.commit()


def _unspend(engine, connection_id: uuid.UUID, nonce: str) -> None:
    with Session(engine) as session:
        session.execute(
            update(Connection)
            .where(col(Connection.id) == connection_id, col(Connection.oauth_state_nonce).is_(None))
            .values(oauth_state_nonce=nonce, oauth_callback_blob=None)
        )
        session.commit()


def _fresh(engine: Engine, connection_id: uuid.UUID) -> Connection:
    with Session(engine, expire_on_commit=False) as session:
        return get_or_fail(session, Connection, connection_id)
