"""Custom connections: create, test, activate, cancel or disable. Changes run through the setup
workflow; reads come from the database."""

from __future__ import annotations

import uuid
from datetime import timedelta

from fastapi import APIRouter, HTTPException, status
from fastapi.concurrency import run_in_threadpool
from sqlmodel import Session, col, select
from temporalio.client import (
    Client,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.connections import seal_secret
from api.deps import SessionDep, SettingsAdmin, SettingsDep, TemporalDep
from api.routers.common import get_owned, start_or_undo
from api.schemas import (
    ConnectionCreate,
    ConnectionPublic,
    ConnectionStep,
    SmtpPublic,
)
from core.connection_rules import (
    RuleViolation,
    SmtpSettingsInput,
    check_host,
    check_smtp_connection,
)
from core.db import session_scope
from core.models import (
    KIND_LABELS,
    LIVE_STATUSES,
    SETUP_STATUSES,
    AuditEvent,
    Connection,
    ConnectionStatus,
    LegalEntity,
    User,
    utcnow,
)
from core.security import secret_box
from core.senders import live_connection
from workflows.oauth_setup import (
    ConsentInput,
    OAuthConnectionSetupWorkflow,
    OAuthSetupInput,
)
from workflows.search_attributes import (
    COMPANY_ID,
    CONNECTION_ID,
    MAIL_STATUS,
    PROVIDER,
)
from workflows.smtp_setup import (
    ActivateInput,
    SmtpConnectionSetupWorkflow,
    SmtpSetupInput,
    setup_workflow_id,
)

router = APIRouter(prefix="/v1/connections", tags=["connections"])

REPLACE_LIVE = (
    "{scope} already sends through an active connection ({address}). An active connection is "
    "not edited or replaced in place: switch the scope back to the platform service first "
    "(POST /v1/mail-settings/use-platform), then set up the new connection."
)


def to_public(connection: Connection) -> ConnectionPublic:
    smtp = None
    if connection.kind == "smtp":
        smtp = SmtpPublic(
            host=connection.smtp_host or "",
            port=connection.smtp_port or 0,
            security=connection.smtp_security or "",
            verify_certificate=connection.smtp_verify_certificate,
            username=connection.smtp_username or "",
        )
    return ConnectionPublic(
        id=connection.id,
        kind=connection.kind,
        custom_address=connection.custom_address,
        legal_entity_id=connection.legal_entity_id,
        status=connection.status,
        setup_state=connection.setup_state,
        authorization_url=connection.authorization_url,
        admin_consent_url=connection.admin_consent_url,
        admin_instructions=connection.admin_instructions,
        steps=[ConnectionStep(**step) for step in connection.steps],
        last_error=connection.last_error,
        sending_mailbox=connection.display_mailbox,
        smtp=smtp,
        workflow_id=connection.workflow_id,
        created_at=connection.created_at,
        tested_at=connection.tested_at,
        activated_at=connection.activated_at,
    )


def _unprocessable(message: str) -> HTTPException:
    return HTTPException(422, message)


def scope_name(session: Session, company_id: uuid.UUID, legal_entity_id: uuid.UUID | None) -> str:
    if legal_entity_id is None:
        return "The company"
    entity = session.get(LegalEntity, legal_entity_id)
    return f"The legal entity {entity.name!r}" if entity else "This legal entity"


def _check_scope(session: Session, user: User, body: ConnectionCreate) -> None:
    if body.legal_entity_id is not None:
        entity = session.get(LegalEntity, body.legal_entity_id)
        if entity is None or entity.company_id != user.company_id:
            raise _unprocessable("legal_entity_id: no such legal entity in your company")
    live = live_connection(session, user.company_id, body.legal_entity_id)
    if live is not None:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            REPLACE_LIVE.format(
                scope=scope_name(session, user.company_id, body.legal_entity_id),
                address=live.custom_address,
            ),
        )


def _save_new(session: Session, user: User, connection: Connection, **detail: dict) -> Connection:
    """The new connection and its audit event (never a secret in it), in one commit."""
    session.add(connection)
    session.add(
        AuditEvent(
            company_id=user.company_id,
            user_id=user.id,
            action="connection.create",
            target=f"connection:{connection.id}",
            detail={
                "kind": connection.kind,
                "custom_address": connection.custom_address,
                "legal_entity_id": str(connection.legal_entity_id or ""),
                **detail,
            },
        )
    )
    session.commit()
    return connection


def _create_oauth_row(session: Session, settings, user: User, body: ConnectionCreate) -> Connection:
    label = KIND_LABELS[body.kind]
    if body.smtp is not None:
        raise _unprocessable(f"smtp: only SMTP connections take SMTP settings, not {label}")
    if not settings.oauth_configured(body.kind):
        prefix = f"RECRUITMAIL_{body.kind.upper()}"
        raise _unprocessable(
            f"kind: {label} sign-in is not configured on this server; an operator must set "
            f"{prefix}_CLIENT_ID and {prefix}_CLIENT_SECRET (see the README)"
        )
    _check_scope(session, user, body)
    connection_id = uuid.uuid4()
    connection = Connection(
        id=connection_id,
        company_id=user.company_id,
        legal_entity_id=body.legal_entity_id,
        kind=body.kind,
        custom_address=body.custom_address,
        status=ConnectionStatus.AWAITING_AUTHORIZATION,
        setup_state=ConnectionStatus.AWAITING_AUTHORIZATION,
        workflow_id=setup_workflow_id(str(connection_id)),
        created_by_user_id=user.id,
    )
    return _save_new(session, user, connection)


def _create_row(session: Session, settings, user: User, body: ConnectionCreate) -> Connection:
    if body.kind != "smtp":
        return _create_oauth_row(session, settings, user, body)
    if body.smtp is None:
        raise _unprocessable("smtp: host, port, security, username and password are required")
    try:
        host = check_host(body.smtp.host)
        check_smtp_connection(
            SmtpSettingsInput(
                custom_address=body.custom_address,
                host=host,
                port=body.smtp.port,
                security=body.smtp.security,
                username=body.smtp.username,
            ),
            allow_insecure=settings.allow_insecure_smtp,
        )
    except RuleViolation as violation:
        raise _unprocessable(str(violation)) from None
    _check_scope(session, user, body)
    connection_id = uuid.uuid4()
    connection = Connection(
        id=connection_id,
        company_id=user.company_id,
        legal_entity_id=body.legal_entity_id,
        kind=body.kind,
        custom_address=body.custom_address,
        status=ConnectionStatus.PENDING,
        setup_state=ConnectionStatus.PENDING,
        smtp_host=host,
        smtp_port=body.smtp.port,
        smtp_security=body.smtp.security,
        smtp_verify_certificate=body.smtp.verify_certificate,
        smtp_username=body.smtp.username,
        secret_blob=seal_secret(
            secret_box(settings),
            connection_id,
            {"password": body.smtp.password.get_secret_value()},
        ),
        workflow_id=setup_workflow_id(str(connection_id)),
        created_by_user_id=user.id,
    )
    smtp = {"host": host, "port": body.smtp.port, "security": body.smtp.security}
    return _save_new(session, user, connection, smtp=smtp)


@router.post("", response_model=ConnectionPublic, status_code=status.HTTP_202_ACCEPTED)
async def create_connection(
    body: ConnectionCreate,
    user: SettingsAdmin,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
) -> ConnectionPublic:
    """Start a setup. SMTP: test it (`/test`), then activate it (`/activate`). Google and
    Microsoft: follow `authorization_url` to sign in; the test runs by itself, then activate."""
    connection = await run_in_threadpool(_create_row, session, settings, user, body)
    await start_or_undo(
        start_setup(temporal, settings, connection),
        lambda: _delete_row(session.bind, connection.id),
        "The connection was not created",
        connection.workflow_id,
    )
    if connection.kind != "smtp":
        await run_update(
            temporal, connection, "wait-for-sign-in-link", None, settings.connection_test_wait
        )
        return await run_in_threadpool(_reload, session, connection)
    return to_public(connection)


async def start_setup(
    client: Client,
    settings,
    connection: Connection,
    *,
    reconnect: bool = False,
    user_id: uuid.UUID | None = None,
) -> None:
    """Start connection-setup-{id}: the SMTP or the OAuth process, by the connection's kind."""
    if connection.kind == "smtp":
        workflow, arg = (
            SmtpConnectionSetupWorkflow.run,
            SmtpSetupInput(
                connection_id=str(connection.id),
                company_id=str(connection.company_id),
                expires_after=settings.connection_setup_expiry,
            ),
        )
    else:
        workflow, arg = (
            OAuthConnectionSetupWorkflow.run,
            OAuthSetupInput(
                connection_id=str(connection.id),
                company_id=str(connection.company_id),
                provider=connection.kind,
                signin_wait=settings.oauth_signin_wait,
                consent_wait=settings.oauth_admin_consent_wait,
                activation_wait=settings.connection_setup_expiry,
                reconnect=reconnect,
                user_id=str(user_id) if user_id else None,
            ),
        )
    await client.start_workflow(
        workflow,
        arg,
        id=connection.workflow_id,
        task_queue=settings.task_queue,
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(COMPANY_ID, str(connection.company_id)),
                SearchAttributePair(CONNECTION_ID, str(connection.id)),
                SearchAttributePair(PROVIDER, connection.kind),
                SearchAttributePair(MAIL_STATUS, connection.setup_state or connection.status),
            ]
        ),
    )


def _delete_row(engine, connection_id: uuid.UUID) -> None:
    with session_scope(engine) as session:
        for event in session.exec(
            select(AuditEvent).where(AuditEvent.target == f"connection:{connection_id}")
        ):
            session.delete(event)
        row = session.get(Connection, connection_id)
        if row is not None:
            session.delete(row)


@router.get("", response_model=list[ConnectionPublic])
def list_connections(user: SettingsAdmin, session: SessionDep) -> list[ConnectionPublic]:
    rows = session.exec(
        select(Connection)
        .where(Connection.company_id == user.company_id)
        .order_by(col(Connection.created_at).desc())
    ).all()
    return [to_public(c) for c in rows]


@router.get("/{connection_id}", response_model=ConnectionPublic)
def read_connection(connection_id: str, user: SettingsAdmin, session: SessionDep):
    return to_public(get_owned(session, Connection, connection_id, user.company_id, "connection"))


async def run_update(
    client: Client,
    connection: Connection,
    update: str,
    arg: object | None,
    wait: timedelta,
    *,
    result_type: type | None = None,
) -> object:
    """Send an update to the setup workflow, mapping its refusals to 409 and its waits to 504."""
    handle = client.get_workflow_handle(connection.workflow_id)
    args = [] if arg is None else [arg]
    try:
        return await handle.execute_update(update, *args, rpc_timeout=wait, result_type=result_type)
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        message = cause.message if isinstance(cause, ApplicationError) else str(cause)
        raise HTTPException(status.HTTP_409_CONFLICT, message) from None
    except WorkflowUpdateRPCTimeoutOrCancelledError:
        raise HTTPException(
            status.HTTP_504_GATEWAY_TIMEOUT,
            f"The {update} is still running; follow it with GET /v1/connections/{connection.id}.",
        ) from None
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                f"This setup has ended (status {connection.status}); create a new connection.",
            ) from None
        raise


async def owned_connection(session: Session, connection_id: str, user: User) -> Connection:
    return await run_in_threadpool(
        get_owned, session, Connection, connection_id, user.company_id, "connection"
    )


def _reload(session: Session, connection: Connection) -> ConnectionPublic:
    session.refresh(connection)
    return to_public(connection)


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
    await run_update(temporal, connection, "test", None, settings.connection_test_wait)
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
        return to_public(connection)
    await run_update(
        temporal,
        connection,
        "activate",
        ActivateInput(connection_id=str(connection.id), user_id=str(user.id)),
        settings.connection_test_wait,
    )
    return await run_in_threadpool(_reload, session, connection)


def disable_connection(
    session: Session, connection: Connection, user: User, action: str, **detail: str
) -> None:
    """Take a live connection out of service (its scope falls back), audited, and commit."""
    before = connection.status
    connection.status = ConnectionStatus.DISABLED
    connection.updated_at = utcnow()
    session.add(connection)
    session.add(
        AuditEvent(
            company_id=connection.company_id,
            user_id=user.id,
            action=action,
            target=f"connection:{connection.id}",
            detail={
                "custom_address": connection.custom_address,
                "status": {"before": before, "after": ConnectionStatus.DISABLED.value},
                **detail,
            },
        )
    )
    session.commit()


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
        await run_in_threadpool(disable_connection, session, connection, user, "connection.disable")
    elif connection.status in SETUP_STATUSES:
        before = connection.status
        await run_update(temporal, connection, "cancel", None, settings.connection_test_wait)
        await run_in_threadpool(
            _audit, session, user, connection, "connection.cancel", {"status_before": before}
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
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            REPLACE_LIVE.format(
                scope=scope_name(session, user.company_id, connection.legal_entity_id),
                address=connection.custom_address,
            ),
        )
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
    if connection.kind == "smtp":
        raise HTTPException(status.HTTP_409_CONFLICT, "SMTP connections need no admin consent.")
    await run_update(
        temporal,
        connection,
        "admin-consent-granted",
        ConsentInput(source="admin-said", user_id=str(user.id)),
        settings.connection_test_wait,
    )
    await run_in_threadpool(
        _audit, session, user, connection, "connection.admin_consent_granted", {}
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
    if connection.kind == "smtp":
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
    await run_in_threadpool(_prepare_reconnect, session, user, connection, live)
    try:
        await start_setup(temporal, settings, connection, reconnect=live, user_id=user.id)
    except WorkflowAlreadyStartedError:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            "A setup for this connection is still running; follow it or cancel it first.",
        ) from None
    await run_update(
        temporal, connection, "wait-for-sign-in-link", None, settings.connection_test_wait
    )
    return await run_in_threadpool(_reload, session, connection)


def _prepare_reconnect(session: Session, user: User, connection: Connection, live: bool) -> None:
    before = connection.status
    if not live:
        connection.status = ConnectionStatus.AWAITING_AUTHORIZATION
    connection.setup_state = ConnectionStatus.AWAITING_AUTHORIZATION
    connection.updated_at = utcnow()
    session.add(connection)
    _audit(session, user, connection, "connection.reconnect", {"status_before": before})


def _audit(session: Session, user: User, connection: Connection, action: str, detail: dict) -> None:
    session.add(
        AuditEvent(
            company_id=connection.company_id,
            user_id=user.id,
            action=action,
            target=f"connection:{connection.id}",
            detail={"custom_address": connection.custom_address, **detail},
        )
    )
    session.commit()
