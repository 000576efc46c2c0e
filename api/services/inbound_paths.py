"""A connection's inbound paths as the API reads and changes them (core/inbound_paths/paths.py has
the rules); the mailbox sync runs they start and stop; the provider notifications that wake
them (verified here, never trusted: they only signal a run, which reads for itself)."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, col, func, select

from api.schemas import InboundPathState, InboundPathsUpdate, InboundPublic
from api.services.common import get_owned
from core import audit
from core.errors import Conflict, Refused
from core.inbound import tokens
from core.inbound_paths import paths as inbound_paths
from core.models import Company, Connection, MailboxSync, User, utcnow
from core.settings import Settings
from core.statuses import (
    ENDED_STATUSES,
    LIVE_STATUSES,
    OAUTH_KINDS,
    SIGN_IN_PENDING,
    ConnectionKind,
    ImportScope,
    InboundPath,
)

_ENDED = ENDED_STATUSES
_NOT_SIGNED_IN = SIGN_IN_PENDING


def public(
    session: Session, settings: Settings, connection: Connection, now: datetime | None = None
) -> InboundPublic:
    sync = session.get(MailboxSync, connection.id)
    found = inbound_paths.statuses(connection, sync, settings.sync_stale_after, now or utcnow())
    company = session.get(Company, connection.company_id)
    example = None
    if InboundPath.HOSTED_REPLY_TO in connection.inbound_paths and company is not None:
        local, _, domain = settings.hosted_address(company.slug).partition("@")
        example = f"{local}{tokens.SEPARATOR}<conversation token>@{domain}"
    return InboundPublic(
        connection_id=connection.id,
        paths=list(connection.inbound_paths),
        import_=connection.import_scope,
        states=[
            InboundPathState(
                path=path,
                state=state.state,
                reason=state.reason,
                checked_at=state.checked_at,
                last_sync_at=state.last_sync_at,
                lag_seconds=state.lag_seconds,
            )
            for path, state in found.items()
        ],
        reply_to_example=example,
    )


@dataclass(frozen=True)
class Change:
    """What a change of paths asks of the runs: start or stop the sync, ask for consent."""

    start_sync: bool = False
    stop_sync: bool = False
    needs_consent: bool = False
    restart_sign_in: bool = False  # a connection not yet signed in: a new link, with read


def update(
    session: Session, user: User, connection: Connection, body: InboundPathsUpdate
) -> Change:
    """Check and save the new paths (audited); what the caller is to do with the runs. 409
    for an ended connection or sync on SMTP; 422 for no path."""
    if connection.status in _ENDED:
        raise Conflict(
            f"This connection has ended ({connection.status}); its inbound paths are not "
            "changed. Create a new connection.",
        )
    paths: list[str] = list(dict.fromkeys(str(p) for p in body.paths))
    problem = inbound_paths.paths_problem(connection.kind, paths)
    if problem and InboundPath.MAILBOX_SYNC in paths and connection.kind not in OAUTH_KINDS:
        raise Conflict(problem)
    if problem:
        raise Refused(problem)
    before_paths, before_scope = list(connection.inbound_paths), connection.import_scope
    scope = body.import_ or connection.import_scope or ImportScope.REPLIES.value
    connection.inbound_paths = paths
    connection.import_scope = scope
    connection.updated_at = utcnow()
    session.add(connection)
    detail: dict[str, Any] = {
        "paths": {"before": before_paths, "after": paths},
        "import": {"before": before_scope, "after": scope},
    }
    audit.record_connection(session, connection, user.id, "connection.inbound_paths", **detail)
    session.commit()
    syncing = InboundPath.MAILBOX_SYNC in paths
    was_syncing = InboundPath.MAILBOX_SYNC in before_paths
    granted = inbound_paths.reads(connection.kind, connection.granted_scopes or [])
    return Change(
        start_sync=syncing,
        stop_sync=was_syncing and not syncing,
        needs_consent=syncing and not granted and connection.status not in _NOT_SIGNED_IN,
        restart_sign_in=syncing and not granted and connection.status in _NOT_SIGNED_IN,
    )


def sync_needed(connection: Connection) -> bool:
    return (
        connection.kind in OAUTH_KINDS
        and InboundPath.MAILBOX_SYNC in (connection.inbound_paths or [])
        and connection.status in LIVE_STATUSES
    )


# -- notifications ---------------------------------------------------------------------------


def graph_subscription(session: Session, subscription_id: str, client_state: str) -> str | None:
    """The connection whose Graph subscription this is, when the notification's clientState
    is the one we gave it (compared in constant time); otherwise None: forged or stale."""
    if not subscription_id or not client_state or len(subscription_id) > 255:
        return None
    row = session.exec(
        select(MailboxSync).where(MailboxSync.subscription_id == subscription_id)
    ).first()
    if row is None or not row.client_state_hash:
        return None
    given = hashlib.sha256(client_state.encode()).hexdigest()
    if not hmac.compare_digest(given, row.client_state_hash):
        return None
    return str(row.connection_id)


def gmail_connections(session: Session, mailbox: str) -> list[str]:
    """The syncing Google connections of this mailbox (a push names only the mailbox)."""
    mailbox = mailbox.strip().lower()
    if not mailbox or len(mailbox) > 320:
        return []
    rows = session.exec(
        select(Connection.id)
        .join(MailboxSync, col(MailboxSync.connection_id) == col(Connection.id))
        .where(
            Connection.kind == ConnectionKind.GOOGLE,
            (func.lower(Connection.display_mailbox) == mailbox)
            | (func.lower(Connection.custom_address) == mailbox),
        )
    ).all()
    return [str(r) for r in rows]


def read(session: Session, settings: Settings, user: User, connection_id: str) -> InboundPublic:
    connection = get_owned(session, Connection, connection_id, user.company_id, "connection")
    return public(session, settings, connection)


def answer(session: Session, settings: Settings, connection: Connection) -> InboundPublic:
    """The paths as they are now, with the sign-in links while one waits for a permission."""
    session.refresh(connection)
    answer = public(session, settings, connection)
    if any(s.state == "waiting_for_consent" for s in answer.states):
        answer.authorization_url = connection.authorization_url
        answer.admin_consent_url = connection.admin_consent_url
    return answer


def graph_owner(engine: Engine, subscription_id: str, client_state: str) -> str | None:
    with Session(engine) as session:
        return graph_subscription(session, subscription_id, client_state)


def gmail_owners(engine: Engine, mailbox: str) -> list[str]:
    with Session(engine) as session:
        return gmail_connections(session, mailbox)
