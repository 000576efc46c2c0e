"""Custom connections: create, test, activate, cancel or disable. Changes run through the setup
workflow (api/services/connections.py); reads come from the database."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Concatenate, ParamSpec, TypeVar

from fastapi import APIRouter, Depends, HTTPException, status
from fastapi.concurrency import run_in_threadpool
from sqlmodel import Session, col, select
from temporalio.client import Client

from api.deps import EngineDep, SessionDep, SettingsAdmin, SettingsDep, TemporalDep
from api.rendering import status_page_url
from api.routers.common import get_owned, insert_then_start
from api.schemas import (
    ConnectionCreate,
    ConnectionPublic,
    DeliverabilityPublic,
    InboundPathsUpdate,
    InboundPublic,
    LargeFilesUpdate,
    QuotaUpdate,
)
from api.services import connections as service
from api.services import inbound_paths as inbound_service
from contracts.oauth import ConsentInput
from contracts.setup import ActivateInput
from core.db import get_or_fail
from core.deliverability import checks as deliverability
from core.models import Company, Connection, User
from core.settings import Settings
from core.statuses import (
    LIVE_STATUSES,
    OAUTH_KINDS,
    SETUP_STATUSES,
    ConnectionKind,
    ConnectionStatus,
)
from workflows.client import start_inbound_check, start_mailbox_sync, stop_mailbox_sync
from workflows.oauth_setup import OAuthConnectionSetupWorkflow
from workflows.setup import ConnectionSetup

router = APIRouter(prefix="/v1/connections", tags=["connections"])
P = ParamSpec("P")
R = TypeVar("R")


def _hosted(session: Session, settings: Settings, company_id: uuid.UUID) -> str:
    return settings.hosted_address(get_or_fail(session, Company, company_id).slug)


def _public(session: Session, settings: Settings, connection: Connection) -> ConnectionPublic:
    hosted = _hosted(session, settings, connection.company_id)
    shown = service.to_public(connection, hosted, _page(settings, connection))
    shown.quota = service.quota(connection, settings)
    return shown


def _page(settings: Settings, connection: Connection) -> str | None:
    """The setup's page in a browser (OAuth connections): what an admin opens or forwards."""
    return status_page_url(settings, connection) if connection.kind in OAUTH_KINDS else None


def _reload(session: Session, settings: Settings, connection: Connection) -> ConnectionPublic:
    session.refresh(connection)
    return _public(session, settings, connection)


@dataclass
class Setup:
    """One of the caller's connections, with what a handler needs to move its setup."""

    connection: Connection
    user: User
    session: Session
    settings: Settings
    temporal: Client

    async def update(
        self, update: Callable[Concatenate[Any, P], Awaitable[R]], *args: P.args, **kw: P.kwargs
    ) -> R:
        return await service.run_update(
            self.temporal,
            self.connection,
            self.settings.connection_test_wait,
            update,
            *args,
            **kw,
        )

    async def audit(self, action: str, **detail: Any) -> None:
        await run_in_threadpool(
            service.audit_and_commit, self.session, self.user, self.connection, action, **detail
        )

    async def answer(self) -> ConnectionPublic:
        """The connection as it is now (the setup's activities wrote to it)."""
        return await run_in_threadpool(_reload, self.session, self.settings, self.connection)


async def owned_setup(
    connection_id: str,
    user: SettingsAdmin,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
) -> Setup:
    connection = await run_in_threadpool(
        get_owned, session, Connection, connection_id, user.company_id, "connection"
    )
    return Setup(connection, user, session, settings, temporal)


SetupDep = Annotated[Setup, Depends(owned_setup)]


@router.post("", response_model=ConnectionPublic, status_code=status.HTTP_202_ACCEPTED)
async def create_connection(
    body: ConnectionCreate,
    user: SettingsAdmin,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
    engine: EngineDep,
) -> ConnectionPublic:
    """Start a setup. SMTP: test it (`/test`), then activate it (`/activate`). Google and
    Microsoft: follow `authorization_url` to sign in; the test runs by itself, then activate."""
    connection = await insert_then_start(
        lambda: service.create_row(session, settings, user, body),
        lambda created: service.start_setup(temporal, settings, created),
        lambda created: service.delete_row(engine, created.id),
        "The connection was not created",
    )
    if connection.kind != ConnectionKind.SMTP:
        await service.run_update(
            temporal,
            connection,
            settings.connection_test_wait,
            OAuthConnectionSetupWorkflow.wait_for_sign_in_link,
        )
        return await run_in_threadpool(_reload, session, settings, connection)
    return await run_in_threadpool(_public, session, settings, connection)


@router.get("", response_model=list[ConnectionPublic])
def list_connections(
    user: SettingsAdmin, session: SessionDep, settings: SettingsDep
) -> list[ConnectionPublic]:
    rows = session.exec(
        select(Connection)
        .where(Connection.company_id == user.company_id)
        .order_by(col(Connection.created_at).desc())
    ).all()
    hosted = _hosted(session, settings, user.company_id)
    shown = [service.to_public(c, hosted, _page(settings, c)) for c in rows]
    for item, connection in zip(shown, rows, strict=True):
        item.quota = service.quota(connection, settings)
    return shown


@router.get("/{connection_id}", response_model=ConnectionPublic)
def read_connection(
    connection_id: str, user: SettingsAdmin, session: SessionDep, settings: SettingsDep
) -> ConnectionPublic:
    connection = get_owned(session, Connection, connection_id, user.company_id, "connection")
    return _public(session, settings, connection)


@router.put("/{connection_id}/quota", response_model=ConnectionPublic)
def set_connection_quota(
    connection_id: str,
    body: QuotaUpdate,
    user: SettingsAdmin,
    session: SessionDep,
    settings: SettingsDep,
) -> ConnectionPublic:
    """The mailbox's own 24-hour quota (messages, recipients), over its provider's defaults:
    a consumer Gmail account's lower limits, a tenant's own Exchange limits. Null goes back to
    the default. Bulk and single sends through it count against it (docs/deliverability.md)."""
    connection = get_owned(session, Connection, connection_id, user.company_id, "connection")
    service.set_quota(session, user, connection, body)
    return _public(session, settings, connection)


@router.get("/{connection_id}/deliverability", response_model=DeliverabilityPublic)
async def connection_deliverability(
    connection_id: str, user: SettingsAdmin, session: SessionDep, settings: SettingsDep
) -> dict[str, Any]:
    """SPF, DKIM and DMARC for the connection's domain, each pass, warn or fail with a sentence
    and the exact DNS record to add or change (docs/deliverability.md). DKIM is read from the
    round trip's test message as it came back."""
    connection = await run_in_threadpool(
        get_owned, session, Connection, connection_id, user.company_id, "connection"
    )
    report = await run_in_threadpool(deliverability.for_connection, connection, settings)
    return report.as_dict()


@router.post("/{connection_id}/test", response_model=ConnectionPublic)
async def test_connection(setup: SetupDep) -> ConnectionPublic:
    """Run the connection test now; the answer holds each step and, on failure, what to fix.
    On an active connection, checks its redirect again through the address's MX without
    interrupting sending (`redirect_check.checking_since` while the check message travels;
    it ends `verified`, `not_seen` or `blocked`)."""
    connection = setup.connection
    if connection.status in LIVE_STATUSES:
        await start_inbound_check(
            setup.temporal, setup.settings, str(connection.id), str(connection.company_id)
        )
        await setup.audit("connection.recheck")
        return await setup.answer()
    await setup.update(ConnectionSetup.test)
    return await setup.answer()


@router.post("/{connection_id}/activate", response_model=ConnectionPublic)
async def activate_connection(setup: SetupDep) -> ConnectionPublic:
    """Make this connection the scope's sender; the connection it replaces is disabled."""
    if setup.connection.status in LIVE_STATUSES:
        return await setup.answer()
    if setup.connection.status == ConnectionStatus.CANCELLED:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            setup.connection.last_error or "This setup was cancelled; create a new connection.",
        )
    await setup.update(
        ConnectionSetup.activate,
        ActivateInput(connection_id=str(setup.connection.id), user_id=str(setup.user.id)),
    )
    answer = await setup.answer()
    await _sync_if_needed(setup)
    return answer


async def _sync_if_needed(setup: Setup) -> None:
    connection = setup.connection
    if inbound_service.sync_needed(connection):
        await start_mailbox_sync(
            setup.temporal,
            setup.settings,
            str(connection.id),
            str(connection.company_id),
            connection.kind,
        )


@router.delete("/{connection_id}", response_model=ConnectionPublic)
async def delete_connection(setup: SetupDep) -> ConnectionPublic:
    """Cancel a setup, or disable a live connection (its scope returns to its fallback)."""
    connection = setup.connection
    if connection.status in LIVE_STATUSES:
        await run_in_threadpool(
            service.disable_connection, setup.session, connection, setup.user, "connection.disable"
        )
        await stop_mailbox_sync(setup.temporal, str(connection.id))
    elif connection.status in SETUP_STATUSES:
        before = connection.status
        await setup.update(ConnectionSetup.cancel)
        await setup.audit("connection.cancel", status_before=before)
    else:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"This connection has already ended ({connection.status})."
        )
    return await setup.answer()


@router.patch("/{connection_id}")
def edit_connection(connection_id: str, user: SettingsAdmin, session: SessionDep) -> None:
    connection = get_owned(session, Connection, connection_id, user.company_id, "connection")
    if connection.status in LIVE_STATUSES:
        raise service.refuse_live(session, user.company_id, connection)
    raise HTTPException(
        status.HTTP_409_CONFLICT,
        "Connections are not edited: cancel this setup (DELETE) and create a new connection.",
    )


@router.post("/{connection_id}/admin-consent-granted", response_model=ConnectionPublic)
async def admin_consent_granted(setup: SetupDep) -> ConnectionPublic:
    """An administrator approved the app (Google Admin console, or a Microsoft portal approval
    that never calls back). The setup resumes with a new sign-in link."""
    if setup.connection.kind == ConnectionKind.SMTP:
        raise HTTPException(status.HTTP_409_CONFLICT, "SMTP connections need no admin consent.")
    await setup.update(
        OAuthConnectionSetupWorkflow.admin_consent_granted,
        ConsentInput(source="admin-said", user_id=str(setup.user.id)),
    )
    await setup.audit("connection.admin_consent_granted")
    return await setup.answer()


_RECONNECTABLE = (
    ConnectionStatus.NEEDS_REAUTH,
    ConnectionStatus.ACTIVE,
    ConnectionStatus.FAILED,
    ConnectionStatus.EXPIRED,
    ConnectionStatus.TEST_FAILED,
)


@router.post(
    "/{connection_id}/reconnect",
    response_model=ConnectionPublic,
    status_code=status.HTTP_202_ACCEPTED,
)
async def reconnect(setup: SetupDep) -> ConnectionPublic:
    """Sign the mailbox in again on the same connection: after `needs_reauth`, or a setup that
    failed or expired. A live connection goes back to `active` by itself once the test passes."""
    connection = setup.connection
    if connection.kind == ConnectionKind.SMTP:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            "SMTP connections are not reconnected: switch back to the platform service and "
            "create a new connection with the new password.",
        )
    if connection.status not in _RECONNECTABLE:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"This connection cannot be reconnected while it is {connection.status}.",
        )
    live = connection.status in LIVE_STATUSES
    activated = connection.setup_state == ConnectionStatus.ACTIVE
    await run_in_threadpool(service.prepare_reconnect, setup.session, setup.user, connection, live)
    started = await service.start_setup(
        setup.temporal,
        setup.settings,
        connection,
        reconnect=live,
        user_id=setup.user.id,
        take_over=activated,
    )
    if not started:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            "A setup for this connection is still running; follow it or cancel it first.",
        )
    await setup.update(OAuthConnectionSetupWorkflow.wait_for_sign_in_link)
    return await setup.answer()


@router.put("/{connection_id}/large-files", response_model=ConnectionPublic)
async def set_large_files(body: LargeFilesUpdate, setup: SetupDep) -> ConnectionPublic:
    """Microsoft only: send files over Graph's 4 MB request as a draft with upload sessions
    (docs/connections.md, Limits). Turning it on for a signed-in mailbox that has not granted
    Mail.ReadWrite starts a new sign-in on the same connection (`authorization_url`), asking
    for that permission; sending goes on meanwhile. 422 for Google and SMTP, which need no
    such setting."""
    connection = setup.connection
    sign_in = await run_in_threadpool(
        service.set_large_files, setup.session, setup.user, connection, body.enabled
    )
    if sign_in:
        await _ask_permission(setup, reconnect=True)
    return await setup.answer()


# -- inbound paths ---------------------------------------------------------------------------


@router.get("/{connection_id}/inbound", response_model=InboundPublic)
def read_inbound(
    connection_id: str, user: SettingsAdmin, session: SessionDep, settings: SettingsDep
) -> InboundPublic:
    """How candidates' replies to this address reach Recruitmail: each path's state (`active`,
    `checking`, `waiting_for_consent`, `failing` with the reason and what to do), and for
    mailbox sync the last successful read and its lag."""
    connection = get_owned(session, Connection, connection_id, user.company_id, "connection")
    return inbound_service.public(session, settings, connection)


@router.put("/{connection_id}/inbound", response_model=InboundPublic)
async def update_inbound(body: InboundPathsUpdate, setup: SetupDep) -> InboundPublic:
    """Choose the paths: `redirect` (the company's mail system redirects the address; the
    default), `mailbox_sync` (Recruitmail reads the connected mailbox; Microsoft and Google
    only: 409 for SMTP), `hosted_reply_to` (mail from the address asks for replies at a
    per-conversation address on the hosted domain; works on every tenant). `import`: `replies`
    (default) or `all` (a mailbox kept for recruiting alone). Adding mailbox_sync to a signed-in
    mailbox asks for the read permission alone (`authorization_url`); sending goes on."""
    connection = setup.connection
    change = await run_in_threadpool(
        inbound_service.update, setup.session, setup.user, connection, body
    )
    if change.stop_sync:
        await stop_mailbox_sync(setup.temporal, str(connection.id))
    if change.needs_consent or change.restart_sign_in:
        await _ask_permission(setup, reconnect=change.needs_consent)
    await _sync_if_needed(setup)
    answer = await run_in_threadpool(_inbound_answer, setup)
    return answer


async def _ask_permission(setup: Setup, *, reconnect: bool) -> None:
    """A new sign-in on the same connection that asks for what it now needs too (the read
    permission for mailbox sync, Mail.ReadWrite for large files); a live connection keeps
    sending meanwhile and is active again once the sign-in's test passes."""
    connection = setup.connection
    live = connection.status in LIVE_STATUSES
    if reconnect:
        await run_in_threadpool(
            service.prepare_reconnect, setup.session, setup.user, connection, live
        )
    await service.start_setup(
        setup.temporal,
        setup.settings,
        connection,
        reconnect=live,
        user_id=setup.user.id,
        take_over=True,
    )
    await setup.update(OAuthConnectionSetupWorkflow.wait_for_sign_in_link)


def _inbound_answer(setup: Setup) -> InboundPublic:
    setup.session.refresh(setup.connection)
    answer = inbound_service.public(setup.session, setup.settings, setup.connection)
    if any(s.state == "waiting_for_consent" for s in answer.states):
        answer.authorization_url = setup.connection.authorization_url
        answer.admin_consent_url = setup.connection.admin_consent_url
    return answer
