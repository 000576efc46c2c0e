"""Connections as the API changes them: the row a setup starts from, the setup run, updates
to it, and the audit trail. The route handlers in api/routers/connections.py stay thin."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Engine
from sqlmodel import Session, col, select
from temporalio.client import (
    Client,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from api.rendering import status_page_url
from api.runs import start_mailbox_sync, start_run
from api.schemas import (
    ConnectionCreate,
    ConnectionPublic,
    ConnectionStep,
    ForwardingConfirmationPublic,
    QuotaPublic,
    QuotaUpdate,
    RedirectCheckPublic,
    SmtpPublic,
)
from api.services import inbound_paths as inbound_service
from api.services.common import get_owned
from contracts.connections.oauth import OAuthSetupInput
from contracts.connections.setup import SmtpSetupInput
from core import audit, events, throttle
from core.connections import ownership, round_trip
from core.connections import rules as connection_rules
from core.connections.rules import (
    RuleViolation,
    SmtpSettingsInput,
    check_host,
    check_smtp_connection,
)
from core.db import get_or_fail, session_scope
from core.errors import Conflict, Refused, StillRunning
from core.inbound_paths import paths as inbound_paths
from core.models import AuditEvent, Company, Connection, LegalEntity, User, utcnow
from core.run_ids import setup_workflow_id
from core.security import secret_box
from core.send.senders import live_connection
from core.settings import Settings
from core.statuses import (
    ENDED_STATUSES,
    KIND_LABELS,
    LIVE_STATUSES,
    OAUTH_KINDS,
    SIGN_IN_PENDING,
    ConnectionKind,
    ConnectionStatus,
    InboundPath,
    RedirectStatus,
)
from workflows.connections.oauth import OAuthConnectionSetupWorkflow
from workflows.connections.smtp import SmtpConnectionSetupWorkflow

ADDRESS_HELD = (
    "custom_address: {address} is already connected to another Recruitmail account. If it is "
    "yours, ask whoever connected it to disconnect it, or contact support."
)
P = ParamSpec("P")
R = TypeVar("R")
REPLACE_LIVE = (
    "{scope} already sends through an active connection ({address}). An active connection is "
    "not edited or replaced in place: switch the scope back to the platform service first "
    "(POST /v1/mail-settings/use-platform), then set up the new connection."
)


def to_public(
    connection: Connection, hosted: str, setup_page_url: str | None = None
) -> ConnectionPublic:
    smtp = None
    if connection.kind == ConnectionKind.SMTP:
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
        setup_page_url=setup_page_url,
        steps=[ConnectionStep(**step) for step in connection.steps],
        last_error=connection.last_error,
        sending_mailbox=connection.display_mailbox,
        mailbox_mode=connection_rules.mailbox_mode(connection),
        large_files=connection.large_files,
        send_mode=connection.send_mode,
        smtp=smtp,
        workflow_id=connection.run_id,
        created_at=connection.created_at,
        tested_at=connection.tested_at,
        activated_at=connection.activated_at,
        redirect_check=redirect_check(connection),
        warnings=warnings(connection, hosted),
        inbound_paths=list(connection.inbound_paths or ["redirect"]),
        forwarding_confirmation=(
            ForwardingConfirmationPublic(
                code=connection.forwarding_code, received_at=connection.forwarding_code_at
            )
            if connection.forwarding_code
            else None
        ),
    )


def quota(connection: Connection, settings: Settings) -> QuotaPublic:
    """The mailbox's 24-hour quota and per-minute rate in effect (core/throttle.py)."""
    rate = throttle.with_overrides(
        throttle.rate_of(connection.kind, settings),
        connection.quota_messages_per_day,
        connection.quota_recipients_per_day,
    )
    return QuotaPublic(
        messages_per_day=rate.daily_cap,
        recipients_per_day=rate.daily_recipients,
        per_minute=round(60 / rate.interval, 3) if rate.interval else 0.0,
        overridden=connection.quota_messages_per_day is not None
        or connection.quota_recipients_per_day is not None,
    )


def set_quota(session: Session, user: User, connection: Connection, body: QuotaUpdate) -> None:
    connection.quota_messages_per_day = body.messages_per_day
    connection.quota_recipients_per_day = body.recipients_per_day
    _changed(
        session,
        user,
        connection,
        "connection.quota",
        messages_per_day=body.messages_per_day,
        recipients_per_day=body.recipients_per_day,
    )


def _changed(
    session: Session, user: User, connection: Connection, action: str, **detail: Any
) -> None:
    """A setting of the connection changed: saved with its audit line, in one commit."""
    connection.updated_at = utcnow()
    session.add(connection)
    audit.record_connection(session, connection, user.id, action, **detail)
    session.commit()


LARGE_FILES_ONLY_MICROSOFT = (
    "large_files: only Microsoft connections need it (Graph takes 4 MB per request); Gmail and "
    "SMTP take files up to their own limits without it."
)
# The permission Graph's drafts need, for a message over its 4 MB request.
LARGE_FILES_SCOPE = "Mail.ReadWrite"


def set_large_files(session: Session, user: User, connection: Connection, enabled: bool) -> bool:
    """Turn large files on or off (audited); True when the mailbox must sign in again to grant
    Mail.ReadWrite. 422 for a connection that is not Microsoft; 409 for one that has ended."""
    _refuse_unless_live_microsoft(connection, LARGE_FILES_ONLY_MICROSOFT)
    before = connection.large_files
    connection.large_files = enabled
    _changed(
        session,
        user,
        connection,
        "connection.large_files",
        large_files={"before": before, "after": enabled},
    )
    signed_in = connection.status not in SIGN_IN_PENDING
    return enabled and signed_in and LARGE_FILES_SCOPE not in (connection.granted_scopes or [])


SEND_MODE_ONLY_MICROSOFT = (
    "mode: only Microsoft connections can send with an application permission (Graph's "
    "Mail.Send scoped by RBAC for Applications); Google and SMTP send as the signed-in account."
)


def set_send_mode(session: Session, user: User, connection: Connection, mode: str) -> None:
    """Send with the signed-in user's grant or with the application permission (audited). 422
    for a connection that is not Microsoft; 409 for one that has ended."""
    _refuse_unless_live_microsoft(connection, SEND_MODE_ONLY_MICROSOFT)
    before = connection.send_mode
    connection.send_mode = mode
    change = {"before": before, "after": mode}
    _changed(session, user, connection, "connection.send_mode", send_mode=change)


def _refuse_unless_live_microsoft(connection: Connection, not_microsoft: str) -> None:
    """A Microsoft-only setting: 422 (saying why) for another kind, 409 once the connection
    has ended."""
    if connection.kind != ConnectionKind.MICROSOFT:
        raise _unprocessable(not_microsoft)
    if connection.status in ENDED_STATUSES:
        raise Conflict(
            f"This connection has ended ({connection.status}); create a new connection.",
        )


def redirect_check(connection: Connection) -> RedirectCheckPublic:
    return RedirectCheckPublic(
        status=connection.redirect_status,
        checked_at=connection.redirect_checked_at,
        detail=connection.redirect_detail,
        checking_since=connection.check_sent_at if connection.check_token_hash else None,
    )


def warnings(connection: Connection, hosted: str) -> list[str]:
    """A connection that sends (or is ready to) while replies to it cannot come back: its
    only way in is a redirect that is not verified."""
    ready = connection.status in (*LIVE_STATUSES, ConnectionStatus.TESTED)
    only_redirect = list(connection.inbound_paths or ["redirect"]) == [InboundPath.REDIRECT]
    found = []
    if ready and only_redirect and connection.redirect_status != RedirectStatus.VERIFIED:
        found.append(round_trip.unverified_warning(connection.custom_address, hosted))
    # The last deliverability report (the round trip's end, the daily check): DMARC failing
    # warns before and after activation; it never refuses (docs/deliverability.md).
    report = connection.deliverability or {}
    checked = str(report.get("checked_at", ""))[:10]
    for check in report.get("checks", []):
        if ready and check.get("name") == "dmarc" and check.get("status") == "fail":
            found.append(
                f"Mail from {connection.custom_address} fails DMARC (checked on {checked}): "
                f"{check.get('sentence')} GET /v1/connections/{connection.id}/deliverability "
                "checks it again now and says what to publish."
            )
    return found


def _unprocessable(message: str) -> Refused:
    return Refused(message)


def scope_name(session: Session, company_id: uuid.UUID, legal_entity_id: uuid.UUID | None) -> str:
    if legal_entity_id is None:
        return "The company"
    entity = session.get(LegalEntity, legal_entity_id)
    return f"The legal entity {entity.name!r}" if entity else "This legal entity"


def refuse_live(session: Session, company_id: uuid.UUID, live: Connection) -> Conflict:
    return Conflict(
        REPLACE_LIVE.format(
            scope=scope_name(session, company_id, live.legal_entity_id),
            address=live.custom_address,
        ),
    )


def _check_scope(session: Session, user: User, body: ConnectionCreate) -> None:
    if body.legal_entity_id is not None:
        entity = session.get(LegalEntity, body.legal_entity_id)
        if entity is None or entity.company_id != user.company_id:
            raise _unprocessable("legal_entity_id: no such legal entity in your company")
    live = live_connection(session, user.company_id, body.legal_entity_id)
    # Switching from SMTP to Google or Microsoft needs no detour: the new one is prepared
    # while SMTP sends, and activating it disables SMTP in the same step.
    if live is not None and not (live.kind == ConnectionKind.SMTP and body.kind in OAUTH_KINDS):
        raise refuse_live(session, user.company_id, live)


def _check_owner(session: Session, settings: Settings, user: User, address: str) -> None:
    """A hosted address is never a custom address; an address another company has proven is
    not available (the answer does not say which company holds it). An unproven claim, even
    an active one, blocks nobody: the first company to prove the address owns it."""
    if ownership.is_hosted_domain(settings, address):
        raise _unprocessable(ownership.hosted_refusal(address))
    if ownership.held_by_another(session, address, user.company_id):
        raise Conflict(ADDRESS_HELD.format(address=address))


def _check_oauth(settings: Settings, body: ConnectionCreate) -> None:
    label = KIND_LABELS[ConnectionKind(body.kind)]
    if body.smtp is not None:
        raise _unprocessable(f"smtp: only SMTP connections take SMTP settings, not {label}")
    if not settings.oauth_configured(body.kind):
        prefix = f"RECRUITMAIL_{body.kind.upper()}"
        raise _unprocessable(
            f"kind: {label} sign-in is not configured on this server; an operator must set "
            f"{prefix}_CLIENT_ID and {prefix}_CLIENT_SECRET (see the README)"
        )


def _smtp_fields(settings: Settings, body: ConnectionCreate) -> dict[str, Any]:
    """The checked SMTP columns of a new connection (the password is sealed separately)."""
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
    return {
        "smtp_host": host,
        "smtp_port": body.smtp.port,
        "smtp_security": body.smtp.security,
        "smtp_verify_certificate": body.smtp.verify_certificate,
        "smtp_username": body.smtp.username,
    }


def create_row(
    session: Session, settings: Settings, user: User, body: ConnectionCreate
) -> Connection:
    """The new connection and its audit event, in one commit; 422 or 409 writes nothing."""
    smtp = body.kind == ConnectionKind.SMTP
    fields = _smtp_fields(settings, body) if smtp else {}
    if not smtp:
        _check_oauth(settings, body)
    _check_owner(session, settings, user, body.custom_address)
    _check_scope(session, user, body)
    first = ConnectionStatus.PENDING if smtp else ConnectionStatus.AWAITING_AUTHORIZATION
    paths = list(dict.fromkeys(body.inbound_paths or [InboundPath.REDIRECT.value]))
    problem = inbound_paths.paths_problem(body.kind, paths)
    if problem:
        raise _unprocessable(f"inbound_paths: {problem}")
    if body.large_files and body.kind != ConnectionKind.MICROSOFT:
        raise _unprocessable(LARGE_FILES_ONLY_MICROSOFT)
    connection_id = uuid.uuid4()
    connection = Connection(
        id=connection_id,
        company_id=user.company_id,
        legal_entity_id=body.legal_entity_id,
        kind=body.kind,
        custom_address=body.custom_address,
        status=first,
        setup_state=first,
        workflow_id=setup_workflow_id(str(connection_id)),
        created_by_user_id=user.id,
        inbound_paths=paths,
        large_files=body.large_files,
        **fields,
    )
    detail: dict[str, Any] = {}
    if body.smtp is not None and smtp:
        password = {"password": body.smtp.password.get_secret_value()}
        connection.secret_blob = secret_box(settings).seal_json(connection_id, password)
        detail["smtp"] = {
            "host": fields["smtp_host"],
            "port": body.smtp.port,
            "security": body.smtp.security,
        }
    session.add(connection)
    audit.record_connection(
        session,
        connection,
        user.id,
        "connection.create",
        kind=connection.kind,
        legal_entity_id=str(connection.legal_entity_id or ""),
        **detail,
    )
    session.commit()
    return connection


def delete_row(engine: Engine, connection_id: uuid.UUID) -> None:
    """Undo create_row when its run could not start."""
    with session_scope(engine) as session:
        for event in session.exec(
            select(AuditEvent).where(AuditEvent.target == f"connection:{connection_id}")
        ):
            session.delete(event)
        row = session.get(Connection, connection_id)
        if row is not None:
            session.delete(row)


async def start_setup(
    client: Client,
    settings: Settings,
    connection: Connection,
    *,
    reconnect: bool = False,
    user_id: uuid.UUID | None = None,
    take_over: bool = False,
) -> bool:
    """Start connection-setup-{id}: the SMTP or the OAuth process, by the connection's kind.
    False when a setup run for this connection is still running, unless `take_over`: an
    activated setup's run may still wait for its redirect leg, with nothing else left to do."""
    connection_id, company_id = str(connection.id), str(connection.company_id)
    if connection.kind == ConnectionKind.SMTP:
        run: Any = SmtpConnectionSetupWorkflow.run
        arg: Any = SmtpSetupInput(
            connection_id,
            company_id,
            expires_after=settings.connection_setup_expiry,
            redirect_wait=settings.redirect_check_wait,
        )
    else:
        run = OAuthConnectionSetupWorkflow.run
        arg = OAuthSetupInput(
            connection_id,
            company_id,
            provider=connection.kind,
            signin_wait=settings.oauth_signin_wait,
            consent_wait=settings.oauth_admin_consent_wait,
            activation_wait=settings.connection_setup_expiry,
            reconnect=reconnect,
            user_id=str(user_id) if user_id else None,
            redirect_wait=settings.redirect_check_wait,
        )
    return await start_run(
        client,
        run,
        arg,
        workflow_id=connection.run_id,
        id_conflict_policy=(
            WorkflowIDConflictPolicy.TERMINATE_EXISTING
            if take_over
            else WorkflowIDConflictPolicy.FAIL
        ),
        task_queue=settings.task_queue,
        company_id=str(connection.company_id),
        status=connection.setup_state or connection.status,
        connection_id=str(connection.id),
        provider=connection.kind,
    )


async def run_update(
    client: Client,
    connection: Connection,
    wait: timedelta,
    update: Callable[Concatenate[Any, P], Awaitable[R]],
    *args: P.args,
    **kwargs: P.kwargs,
) -> R:
    """Send an update to the setup workflow, mapping its refusals to 409 and its waits to 504.

    `update` is the workflow's handler (ConnectionSetup.test, OAuthConnectionSetupWorkflow.
    complete_authorization, ...): its name and result type come from it, and mypy checks the
    argument against it."""
    handle = client.get_workflow_handle(connection.run_id)
    name = getattr(update, "__name__", "update").replace("_", " ")
    try:
        result = await handle.execute_update(cast(Any, update), args=list(args), rpc_timeout=wait)
        return cast(R, result)
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        message = cause.message if isinstance(cause, ApplicationError) else str(cause)
        raise Conflict(message) from None
    except WorkflowUpdateRPCTimeoutOrCancelledError:
        raise StillRunning(
            f"The {name} is still running; follow it with GET /v1/connections/{connection.id}.",
        ) from None
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise Conflict(
                f"This setup has ended (status {connection.status}); create a new connection.",
            ) from None
        raise


def disable_connection(
    session: Session, connection: Connection, user: User, action: str, **detail: str
) -> None:
    """Take a live connection out of service (its scope falls back), audited, and commit."""
    before = connection.status
    connection.status = ConnectionStatus.DISABLED
    connection.updated_at = utcnow()
    session.add(connection)
    ownership.release(session, connection)
    why = "switched back to the platform" if action.startswith("mail_settings") else "disabled"
    events.connection_changed(session, connection, before, why)
    audit.record_connection(
        session,
        connection,
        user.id,
        action,
        status={"before": before, "after": ConnectionStatus.DISABLED.value},
        **detail,
    )
    session.commit()


def prepare_reconnect(session: Session, user: User, connection: Connection, live: bool) -> None:
    before = connection.status
    if not live:
        connection.status = ConnectionStatus.AWAITING_AUTHORIZATION
    connection.setup_state = ConnectionStatus.AWAITING_AUTHORIZATION
    connection.updated_at = utcnow()
    session.add(connection)
    audit_and_commit(session, user, connection, "connection.reconnect", status_before=before)


def audit_and_commit(
    session: Session, user: User, connection: Connection, action: str, **detail: Any
) -> None:
    audit.record_connection(session, connection, user.id, action, **detail)
    session.commit()


# -- a connection as the API answers with it ---------------------------------------------------


def hosted(session: Session, settings: Settings, company_id: uuid.UUID) -> str:
    return settings.hosted_address(get_or_fail(session, Company, company_id).slug)


def public(session: Session, settings: Settings, connection: Connection) -> ConnectionPublic:
    address = hosted(session, settings, connection.company_id)
    shown = to_public(connection, address, _page(settings, connection))
    shown.quota = quota(connection, settings)
    return shown


def _page(settings: Settings, connection: Connection) -> str | None:
    """The setup's page in a browser (OAuth connections): what an admin opens or forwards."""
    return status_page_url(settings, connection) if connection.kind in OAUTH_KINDS else None


def reload(session: Session, settings: Settings, connection: Connection) -> ConnectionPublic:
    session.refresh(connection)
    return public(session, settings, connection)


def all_public(session: Session, settings: Settings, user: User) -> list[ConnectionPublic]:
    rows = session.exec(
        select(Connection)
        .where(Connection.company_id == user.company_id)
        .order_by(col(Connection.created_at).desc())
    ).all()
    address = hosted(session, settings, user.company_id)
    shown = [to_public(c, address, _page(settings, c)) for c in rows]
    for item, connection in zip(shown, rows, strict=True):
        item.quota = quota(connection, settings)
    return shown


def owned(session: Session, user: User, connection_id: str) -> Connection:
    return get_owned(session, Connection, connection_id, user.company_id, "connection")


def set_quota_of(
    session: Session, settings: Settings, user: User, connection_id: str, body: QuotaUpdate
) -> ConnectionPublic:
    connection = owned(session, user, connection_id)
    set_quota(session, user, connection, body)
    return public(session, settings, connection)


def refuse_edit(session: Session, user: User, connection_id: str) -> None:
    """Connections are never edited (409): a live one is replaced, a setup cancelled."""
    connection = owned(session, user, connection_id)
    if connection.status in LIVE_STATUSES:
        raise refuse_live(session, user.company_id, connection)
    raise Conflict(
        "Connections are not edited: cancel this setup (DELETE) and create a new connection."
    )


# -- what a connection's state allows ---------------------------------------------------------

# A sign-in again on the same connection: after `needs_reauth`, or a setup that failed or expired.
_RECONNECTABLE = (
    ConnectionStatus.NEEDS_REAUTH,
    ConnectionStatus.ACTIVE,
    ConnectionStatus.FAILED,
    ConnectionStatus.EXPIRED,
    ConnectionStatus.TEST_FAILED,
)


def refuse_activation(connection: Connection) -> None:
    if connection.status == ConnectionStatus.CANCELLED:
        raise Conflict(
            connection.last_error or "This setup was cancelled; create a new connection."
        )


def refuse_admin_consent(connection: Connection) -> None:
    if connection.kind == ConnectionKind.SMTP:
        raise Conflict("SMTP connections need no admin consent.")


def refuse_reconnect(connection: Connection) -> None:
    if connection.kind == ConnectionKind.SMTP:
        raise Conflict(
            "SMTP connections are not reconnected: switch back to the platform service and "
            "create a new connection with the new password."
        )
    if connection.status not in _RECONNECTABLE:
        raise Conflict(f"This connection cannot be reconnected while it is {connection.status}.")


# -- moving a setup from a request ----------------------------------------------------------


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
        return await run_update(
            self.temporal,
            self.connection,
            self.settings.connection_test_wait,
            update,
            *args,
            **kw,
        )

    async def audit(self, action: str, **detail: Any) -> None:
        await run_in_threadpool(
            audit_and_commit, self.session, self.user, self.connection, action, **detail
        )

    async def answer(self) -> ConnectionPublic:
        """The connection as it is now (the setup's activities wrote to it)."""
        return await run_in_threadpool(reload, self.session, self.settings, self.connection)


async def ask_permission(setup: Setup, *, reconnect: bool) -> None:
    """A new sign-in on the same connection that asks for what it now needs too (the read
    permission for mailbox sync, Mail.ReadWrite for large files); a live connection keeps
    sending meanwhile and is active again once the sign-in's test passes."""
    connection = setup.connection
    live = connection.status in LIVE_STATUSES
    if reconnect:
        await run_in_threadpool(prepare_reconnect, setup.session, setup.user, connection, live)
    await start_setup(
        setup.temporal,
        setup.settings,
        connection,
        reconnect=live,
        user_id=setup.user.id,
        take_over=True,
    )
    await setup.update(OAuthConnectionSetupWorkflow.wait_for_sign_in_link)


async def sync_if_needed(setup: Setup) -> None:
    connection = setup.connection
    if inbound_service.sync_needed(connection):
        await start_mailbox_sync(
            setup.temporal,
            setup.settings,
            str(connection.id),
            str(connection.company_id),
            connection.kind,
        )
