"""Custom connections: create, test, activate, cancel or disable. Changes run through the setup
workflow (api/services/connections.py); reads come from the database."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from fastapi.concurrency import run_in_threadpool
from sqlmodel import Session, col, select

from api.deps import EngineDep, SessionDep, SettingsAdmin, SettingsDep, TemporalDep
from api.routers.common import get_owned, start_or_undo
from api.schemas import ConnectionCreate, ConnectionPublic
from api.services import connections as service
from core.models import Connection, User
from core.statuses import LIVE_STATUSES, SETUP_STATUSES, ConnectionKind, ConnectionStatus
from workflows.oauth_setup import ConsentInput
from workflows.setup import ActivateInput

router = APIRouter(prefix="/v1/connections", tags=["connections"])


async def owned_connection(session: Session, connection_id: str, user: User) -> Connection:
    return await run_in_threadpool(
        get_owned, session, Connection, connection_id, user.company_id, "connection"
    )


def _reload(session: Session, connection: Connection) -> ConnectionPublic:
    session.refresh(connection)
    return service.to_public(connection)


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
    connection = await run_in_threadpool(service.create_row, session, settings, user, body)
    await start_or_undo(
        service.start_setup(temporal, settings, connection),
        lambda: service.delete_row(engine, connection.id),
        "The connection was not created",
        connection.run_id,
    )
    if connection.kind != ConnectionKind.SMTP:
        await service.run_update(
            temporal, connection, "wait-for-sign-in-link", None, settings.connection_test_wait
        )
        return await run_in_threadpool(_reload, session, connection)
    return service.to_public(connection)


@router.get("", response_model=list[ConnectionPublic])
def list_connections(user: SettingsAdmin, session: SessionDep) -> list[ConnectionPublic]:
    rows = session.exec(
        select(Connection)
        .where(Connection.company_id == user.company_id)
        .order_by(col(Connection.created_at).desc())
    ).all()
    return [service.to_public(c) for c in rows]


@router.get("/{connection_id}", response_model=ConnectionPublic)
def read_connection(connection_id: str, user: SettingsAdmin, session: SessionDep):
    return service.to_public(
        get_owned(session, Connection, connection_id, user.company_id, "connection")
    )


@router.post("/{connection_id}/test", response_model=ConnectionPublic)
async def test_connection(
    connection_id: str,
    user: SettingsAdmin,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
) -> ConnectionPublic:
    """Run the connection test now; the answer holds each step and, on failure, what to fix."""
    connection = await owned_connection(session, connection_id, user)
    if connection.status in LIVE_STATUSES:
        raise HTTPException(status.HTTP_409_CONFLICT, "This connection is already active.")
    await service.run_update(temporal, connection, "test", None, settings.connection_test_wait)
    return await run_in_threadpool(_reload, session, connection)


@router.post("/{connection_id}/activate", response_model=ConnectionPublic)
async def activate_connection(
    connection_id: str,
    user: SettingsAdmin,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
) -> ConnectionPublic:
    """Make this connection the scope's sender; the connection it replaces is disabled."""
    connection = await owned_connection(session, connection_id, user)
    if connection.status in LIVE_STATUSES:
        return service.to_public(connection)
    await service.run_update(
        temporal,
        connection,
        "activate",
        ActivateInput(connection_id=str(connection.id), user_id=str(user.id)),
        settings.connection_test_wait,
    )
    return await run_in_threadpool(_reload, session, connection)


@router.delete("/{connection_id}", response_model=ConnectionPublic)
async def delete_connection(
    connection_id: str,
    user: SettingsAdmin,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
) -> ConnectionPublic:
    """Cancel a setup, or disable a live connection (its scope returns to its fallback)."""
    connection = await owned_connection(session, connection_id, user)
    if connection.status in LIVE_STATUSES:
        await run_in_threadpool(
            service.disable_connection, session, connection, user, "connection.disable"
        )
    elif connection.status in SETUP_STATUSES:
        before = connection.status
        await service.run_update(
            temporal, connection, "cancel", None, settings.connection_test_wait
        )
        await run_in_threadpool(
            service.audit_and_commit,
            session,
            user,
            connection,
            "connection.cancel",
            status_before=before,
        )
    else:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"This connection has already ended ({connection.status})."
        )
    return await run_in_threadpool(_reload, session, connection)


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
async def admin_consent_granted(
    connection_id: str,
    user: SettingsAdmin,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
) -> ConnectionPublic:
    """An administrator approved the app (Google Admin console, or a Microsoft portal approval
    that never calls back). The setup resumes with a new sign-in link."""
    connection = await owned_connection(session, connection_id, user)
    if connection.kind == ConnectionKind.SMTP:
        raise HTTPException(status.HTTP_409_CONFLICT, "SMTP connections need no admin consent.")
    await service.run_update(
        temporal,
        connection,
        "admin-consent-granted",
        ConsentInput(source="admin-said", user_id=str(user.id)),
        settings.connection_test_wait,
    )
    await run_in_threadpool(
        service.audit_and_commit, session, user, connection, "connection.admin_consent_granted"
    )
    return await run_in_threadpool(_reload, session, connection)


@router.post(
    "/{connection_id}/reconnect",
    response_model=ConnectionPublic,
    status_code=status.HTTP_202_ACCEPTED,
)
async def reconnect(
    connection_id: str,
    user: SettingsAdmin,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
) -> ConnectionPublic:
    """Sign the mailbox in again on the same connection: after `needs_reauth`, or a setup that
    failed or expired. A live connection goes back to `active` by itself once the test passes."""
    connection = await owned_connection(session, connection_id, user)
    if connection.kind == ConnectionKind.SMTP:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            "SMTP connections are not reconnected: switch back to the platform service and "
            "create a new connection with the new password.",
        )
    reconnectable = (
        ConnectionStatus.NEEDS_REAUTH,
        ConnectionStatus.ACTIVE,
        ConnectionStatus.FAILED,
        ConnectionStatus.EXPIRED,
        ConnectionStatus.TEST_FAILED,
    )
    if connection.status not in reconnectable:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"This connection cannot be reconnected while it is {connection.status}.",
        )
    live = connection.status in LIVE_STATUSES
    await run_in_threadpool(service.prepare_reconnect, session, user, connection, live)
    started = await service.start_setup(
        temporal, settings, connection, reconnect=live, user_id=user.id
    )
    if not started:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            "A setup for this connection is still running; follow it or cancel it first.",
        )
    await service.run_update(
        temporal, connection, "wait-for-sign-in-link", None, settings.connection_test_wait
    )
    return await run_in_threadpool(_reload, session, connection)
