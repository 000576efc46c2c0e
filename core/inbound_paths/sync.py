"""Mailbox sync's rules: what is imported from a connected mailbox, how an import is stored
(the same intake as SMTP: the raw bytes first, then the routing run), and the path's health.

What is imported, with `import: replies` (the default):
- replies to this company's own messages (In-Reply-To or References names one);
- mail from a known candidate (an open application, or one closed within the grace period);
- the round trip's check message (it proves the path end to end; never shown).
Nothing else is stored or logged, not even a subject. With `import: all`, everything that
arrives in the inbox is imported (for a mailbox kept for recruiting alone).

Health: a sign-in the provider no longer accepts (a revoked grant, a 401) makes the path
`failing` at once; other failures only once no read has succeeded for `sync_stale_after`.
A path that starts failing emits `connection.inbound_path_changed` and tells the admins once.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import getaddresses

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from core.inbound import candidates
from core.inbound.headers import MSGID_RE, unique
from core.inbound_paths.paths import changed, consent_reason
from core.models import Connection, InboundRaw, MailboxSync, utcnow
from core.run_ids import receive_workflow_id
from core.statuses import ImportScope, InboundPath, InboundState, PathState


@dataclass(frozen=True)
class Summary:
    """A message's deciding headers as the mailbox's API gave them (lower-cased names, every
    value), read before anything else of it."""

    headers: dict[str, list[str]] = field(default_factory=dict)
    received_at: datetime | None = None

    def first(self, name: str) -> str:
        values = self.headers.get(name.lower()) or [""]
        return values[0]


def thread_ids(summary: Summary) -> list[str]:
    text = " ".join(summary.headers.get("in-reply-to", []) + summary.headers.get("references", []))
    return [f"<{i}>" for i in unique(MSGID_RE.findall(text[:65_536]))][: candidates.MAX_THREAD_IDS]


def sender(summary: Summary) -> str:
    found = getaddresses([summary.first("from")[:4096]])
    return found[0][1].strip().lower() if found else ""


def wanted(
    session: Session, connection: Connection, summary: Summary, grace: timedelta, now: datetime
) -> bool:
    """Whether a message in the mailbox is for Recruitmail (the module's rule)."""
    if connection.import_scope == ImportScope.ALL:
        return True
    if summary.first("x-recruitmail-check"):
        return True
    company_id = connection.company_id
    if candidates.our_message(session, company_id, thread_ids(summary)) is not None:
        return True
    address = sender(summary)
    if not address or address == connection.custom_address.lower():
        return False
    received = summary.received_at or now
    return (
        candidates.candidate_by_address(session, company_id, address, received, grace) is not None
    )


def known(session: Session, company_id: uuid.UUID, channel: str, ids: list[str]) -> set[str]:
    """The provider ids among `ids` already imported for this company."""
    if not ids:
        return set()
    rows = session.exec(
        select(InboundRaw.provider_message_id).where(
            InboundRaw.company_id == company_id,
            InboundRaw.channel == channel,
            col(InboundRaw.provider_message_id).in_(ids),
        )
    ).all()
    return {r for r in rows if r}


def unrouted(session: Session, company_id: uuid.UUID, channel: str, ids: list[str]) -> list[str]:
    """Imports among `ids` stored but not yet routed: a round that died after storing them
    never started their routing; the round that reads the page again does."""
    if not ids:
        return []
    rows = session.exec(
        select(InboundRaw.id).where(
            InboundRaw.company_id == company_id,
            InboundRaw.channel == channel,
            col(InboundRaw.provider_message_id).in_(ids),
            InboundRaw.state == InboundState.STORED,
        )
    ).all()
    return [str(r) for r in rows]


def store(
    session: Session,
    connection: Connection,
    channel: str,
    provider_id: str,
    raw: bytes,
    mail_from: str,
) -> InboundRaw | None:
    """Commit an imported message, as the receiver does; None when it was imported before
    (a page read again after a crash)."""
    row = InboundRaw(
        company_id=connection.company_id,
        raw=raw,
        sha256=hashlib.sha256(raw).hexdigest(),
        size=len(raw),
        recipient=connection.custom_address[:320],
        mail_from=mail_from[:320],
        channel=channel,
        provider_message_id=provider_id[:255],
        received_at=utcnow(),
    )
    row.workflow_id = receive_workflow_id(str(row.id))
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        return None
    return row


def sync_row(session: Session, connection: Connection) -> MailboxSync:
    found = session.get(MailboxSync, connection.id)
    if found is None:
        found = MailboxSync(
            connection_id=connection.id,
            company_id=connection.company_id,
            provider=connection.kind,
            state=PathState.OFF,
        )
        session.add(found)
    return found


def _move(
    session: Session, connection: Connection, sync: MailboxSync, state: str, reason: str
) -> None:
    before = sync.state
    sync.state, sync.reason, sync.updated_at = state, reason or None, utcnow()
    session.add(sync)
    if before != state:
        changed(session, connection, InboundPath.MAILBOX_SYNC, state, reason or None)


def succeeded(
    session: Session,
    connection: Connection,
    sync: MailboxSync,
    imported: int,
    newest: datetime | None,
    now: datetime,
) -> None:
    sync.last_success_at = now
    sync.failing_since = None
    sync.told_at = None
    sync.imported += imported
    if newest is not None:
        sync.lag_seconds = max((now - newest).total_seconds(), 0.0)
    _move(session, connection, sync, PathState.ACTIVE, "")


def waiting_for_consent(session: Session, connection: Connection, sync: MailboxSync) -> None:
    _move(session, connection, sync, PathState.WAITING_FOR_CONSENT, consent_reason(connection))


def failed(
    session: Session,
    connection: Connection,
    sync: MailboxSync,
    reason: str,
    now: datetime,
    stale_after: timedelta,
    *,
    at_once: bool,
) -> bool:
    """Record a failed read; True when the admins are to be told now (once per failure)."""
    sync.failing_since = sync.failing_since or now
    since = sync.last_success_at or sync.created_at
    if not at_once and now - since < stale_after:
        sync.reason = reason
        session.add(sync)
        return False  # passing trouble: the next read may well succeed
    if not at_once:
        reason = f"No successful read since {since:%Y-%m-%d %H:%M} UTC: {reason}"
    _move(session, connection, sync, PathState.FAILING, reason)
    if sync.told_at is not None:
        return False
    sync.told_at = now
    return True
