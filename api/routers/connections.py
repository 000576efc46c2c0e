"""Custom connections: create, test, activate, cancel or disable. Changes run through the setup
workflow (api/services/connections.py); reads come from the database."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status
from fastapi.concurrency import run_in_threadpool

from api.deps import EngineDep, SessionDep, SettingsAdmin, SettingsDep, TemporalDep
from api.routers.common import SetupDep, insert_then_start
from api.runs import start_inbound_check, stop_mailbox_sync
from api.schemas import (
    ConnectionCreate,
    ConnectionPublic,
    DeliverabilityPublic,
    LargeFilesUpdate,
    QuotaUpdate,
    SendModeUpdate,
)
from api.services import connections as service
from contracts.connections.oauth import AdminConsentInput
from contracts.connections.setup import ActivateInput
from core.deliverability import checks as deliverability
from core.errors import Conflict
from core.statuses import (
    LIVE_STATUSES,
    SETUP_STATUSES,
    ConnectionKind,
    ConnectionStatus,
)
from workflows.connections.oauth import OAuthConnectionSetupWorkflow
from workflows.connections.setup import ConnectionSetup

router = APIRouter(prefix="/v1/connections", tags=["connections"])


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
        return await run_in_threadpool(service.reload, session, settings, connection)
    return await run_in_threadpool(service.public, session, settings, connection)


@router.get("", response_model=list[ConnectionPublic])
def list_connections(
    user: SettingsAdmin, session: SessionDep, settings: SettingsDep
) -> list[ConnectionPublic]:
    return service.all_public(session, settings, user)


@router.get("/{connection_id}", response_model=ConnectionPublic)
def read_connection(
    connection_id: str, user: SettingsAdmin, session: SessionDep, settings: SettingsDep
) -> ConnectionPublic:
    return service.public(session, settings, service.owned(session, user, connection_id))


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
    return service.set_quota_of(session, settings, user, connection_id, body)


@router.get("/{connection_id}/deliverability", response_model=DeliverabilityPublic)
async def connection_deliverability(
    connection_id: str, user: SettingsAdmin, session: SessionDep, settings: SettingsDep
) -> dict[str, Any]:
    """SPF, DKIM and DMARC for the connection's domain, each pass, warn or fail with a sentence
    and the exact DNS record to add or change (docs/deliverability.md). DKIM is read from the
    round trip's test message as it came back."""
    connection = await run_in_threadpool(service.owned, session, user, connection_id)
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
    service.refuse_activation(setup.connection)
    await setup.update(
        ConnectionSetup.activate,
        ActivateInput(connection_id=str(setup.connection.id), user_id=str(setup.user.id)),
    )
    answer = await setup.answer()
    await service.sync_if_needed(setup)
    return answer


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
        raise Conflict(f"This connection has already ended ({connection.status}).")
    return await setup.answer()


@router.patch("/{connection_id}")
def edit_connection(connection_id: str, user: SettingsAdmin, session: SessionDep) -> None:
    service.refuse_edit(session, user, connection_id)


@router.post("/{connection_id}/admin-consent-granted", response_model=ConnectionPublic)
async def admin_consent_granted(setup: SetupDep) -> ConnectionPublic:
    """An administrator approved the app (Google Admin console, or a Microsoft portal approval
    that never calls back). The setup resumes with a new sign-in link."""
    service.refuse_admin_consent(setup.connection)
    await setup.update(
        OAuthConnectionSetupWorkflow.admin_consent_granted,
        AdminConsentInput(source="admin-said", user_id=str(setup.user.id)),
    )
    await setup.audit("connection.admin_consent_granted")
    return await setup.answer()


@router.post(
    "/{connection_id}/reconnect",
    response_model=ConnectionPublic,
    status_code=status.HTTP_202_ACCEPTED,
)
async def reconnect(setup: SetupDep) -> ConnectionPublic:
    """Sign the mailbox in again on the same connection: after `needs_reauth`, or a setup that
    failed or expired. A live connection goes back to `active` by itself once the test passes."""
    connection = setup.connection
    service.refuse_reconnect(connection)
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
        raise Conflict(
            "A setup for this connection is still running; follow it or cancel it first."
        )
    await setup.update(OAuthConnectionSetupWorkflow.wait_for_sign_in_link)
    return await setup.answer()


@router.put("/{connection_id}/send-mode", response_model=ConnectionPublic)
async def set_send_mode(body: SendModeUpdate, setup: SetupDep) -> ConnectionPublic:
    """Microsoft only: send with the signed-in user's delegated Mail.Send (`delegated`, the
    default) or with Recruitmail's application permission Mail.Send (`application`), which the
    tenant's admin grants and scopes to this mailbox with Exchange's RBAC for Applications
    (docs/connections.md). Application sending goes on when the user leaves or their sign-in
    is revoked; a mailbox outside the admin's scope fails its sends with the lines that fix
    it. 422 for Google and SMTP."""
    await run_in_threadpool(
        service.set_send_mode, setup.session, setup.user, setup.connection, body.mode
    )
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
        await service.ask_permission(setup, reconnect=True)
    return await setup.answer()
