"""Events: what happened, told to the platform (the feed, webhooks) and to recruiters.

An event row is added to the session of the change it reports and commits with it (the
transactional outbox): no event for a change that rolled back, no committed change without its
event, whichever process dies when.

Rows get their place in the feed (`seq`) after commit, from `sequence()`: one sequencer at a
time (a locked counter row), numbering what has committed since the last one, in one
transaction. A reader sees a number only once every smaller one is visible too, so a consumer
that stores its cursor never misses or repeats an event, whichever process wrote it.

Default events carry ids, statuses and reasons, never personal data: reasons pass through
`scrub()`, which masks addresses. What an endpoint may opt in to (the sender address, the
candidate's name, the subject; never a body) is kept apart in `personal`.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import bindparam, delete, func, update
from sqlmodel import Session, col, select

from core.models import (
    Candidate,
    Connection,
    Event,
    EventSequence,
    Message,
    WebhookAttempt,
    WebhookDelivery,
    table_of,
    utcnow,
)
from core.redaction import mask_addresses


class EventType(StrEnum):
    MESSAGE_SENT = "message.sent"
    MESSAGE_FAILED = "message.failed"
    MESSAGE_BOUNCED = "message.bounced"
    MESSAGE_SCHEDULED = "message.scheduled"
    MESSAGE_CANCELLED = "message.cancelled"
    MESSAGE_SKIPPED = "message.skipped"
    MESSAGE_RECEIVED = "message.received"
    MESSAGE_ASSIGNED = "message.assigned"
    INVITATION_ANSWERED = "invitation.answered"
    CANDIDATE_CREATED_FROM_MESSAGE = "candidate.created_from_message"
    CANDIDATE_ERASED = "candidate.erased"
    CANDIDATE_OPTED_OUT = "candidate.opted_out"
    CANDIDATE_OPTED_IN = "candidate.opted_in"
    CONNECTION_STATUS_CHANGED = "connection.status_changed"
    CONNECTION_REDIRECT_CHECK = "connection.redirect_check"
    CONNECTION_INBOUND_PATH_CHANGED = "connection.inbound_path_changed"
    CONNECTION_FORWARDING_CONFIRMATION = "connection.forwarding_confirmation"
    CONNECTION_DELIVERABILITY_CHANGED = "connection.deliverability_changed"
    SUPPRESSION_ADDED = "suppression.added"
    SUPPRESSION_RELEASED = "suppression.released"
    BULK_COMPLETED = "bulk.completed"
    BULK_CANCELLED = "bulk.cancelled"
    WEBHOOK_ENDPOINT_DISABLED = "webhook_endpoint.disabled"
    WEBHOOK_TEST = "webhook.test"


CATALOGUE = frozenset(t.value for t in EventType)
# Sequenced per call, so one sequencer holds the lock for a bounded time.
SEQUENCE_BATCH = 1000


def scrub(text: str | None) -> str | None:
    """A reason without the addresses in it (a refusal like `550 5.1.1 <grace@…>` names one)."""
    if text is None:
        return None
    return mask_addresses(text)


def message_data(
    message_id: uuid.UUID,
    candidate_id: uuid.UUID | None,
    status: str,
    *,
    direction: str = "outbound",
    reason: str | None = None,
    bulk_job_id: uuid.UUID | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """What a message event carries for everyone: ids, status, a reason without addresses."""
    data: dict[str, Any] = {
        "message_id": str(message_id),
        "candidate_id": str(candidate_id) if candidate_id else None,
        "direction": direction,
        "status": status,
    }
    if bulk_job_id is not None:
        data["bulk_job_id"] = str(bulk_job_id)
    if reason is not None:
        data["reason"] = scrub(reason)
    data.update(extra)
    return data


def message_personal(sender: str, candidate_name: str | None, subject: str) -> dict[str, Any]:
    """What an endpoint that opted in also gets: never a body."""
    return {"sender_address": sender, "candidate_name": candidate_name, "subject": subject}


def message_event(
    session: Session, message: Message, type: EventType, reason: str | None = None, **extra: Any
) -> Event:
    """An event about `message`'s new status, in the transaction that writes it."""
    candidate = session.get(Candidate, message.candidate_id) if message.candidate_id else None
    return emit(
        session,
        message.company_id,
        type,
        message_data(
            message.id,
            message.candidate_id,
            message.status,
            direction=message.direction,
            reason=reason,
            bulk_job_id=message.bulk_job_id,
            **extra,
        ),
        personal=message_personal(
            message.from_address, candidate.name if candidate else None, message.subject
        ),
        candidate_id=message.candidate_id,
    )


def connection_changed(
    session: Session, connection: Connection, before: str, reason: str | None = None
) -> Event | None:
    """connection.status_changed, when the status really changed; the reason is readable
    ("needs a new sign-in", "test failed: …", "activated", "replaced by …")."""
    if before == connection.status:
        return None
    return emit(
        session,
        connection.company_id,
        EventType.CONNECTION_STATUS_CHANGED,
        {
            "connection_id": str(connection.id),
            "kind": connection.kind,
            "legal_entity_id": str(connection.legal_entity_id)
            if connection.legal_entity_id
            else None,
            "from": before,
            "to": connection.status,
            "reason": scrub(reason or _STATUS_REASONS.get(connection.status, connection.status)),
        },
    )


def redirect_checked(session: Session, connection: Connection) -> Event:
    """connection.redirect_check: verified or not_seen, with its detail."""
    return emit(
        session,
        connection.company_id,
        EventType.CONNECTION_REDIRECT_CHECK,
        {
            "connection_id": str(connection.id),
            "kind": connection.kind,
            "status": connection.redirect_status,
            "reason": scrub(connection.redirect_detail),
        },
    )


# What a status means when the change itself gives no more specific reason.
_STATUS_REASONS = {
    "active": "activated",
    "needs_reauth": "needs a new sign-in",
    "tested": "test passed",
    "test_failed": "test failed",
    "disabled": "disabled",
    "cancelled": "cancelled",
    "expired": "expired before it was activated",
    "failed": "the sign-in failed",
    "awaiting_admin_consent": "an administrator must approve",
}


def row(
    company_id: uuid.UUID,
    type: EventType,
    data: dict[str, Any],
    *,
    personal: dict[str, Any] | None = None,
    candidate_id: uuid.UUID | None = None,
) -> dict[str, Any]:
    """An event as plain values, for the hot paths that insert with SQLAlchemy Core."""
    return {
        "id": uuid.uuid4(),
        "seq": None,
        "company_id": company_id,
        "type": type.value,
        "created_at": utcnow(),
        "data": data,
        "personal": personal or None,
        "candidate_id": candidate_id,
        "endpoint_id": None,
    }


def emit(
    session: Session,
    company_id: uuid.UUID,
    type: EventType,
    data: dict[str, Any],
    *,
    personal: dict[str, Any] | None = None,
    candidate_id: uuid.UUID | None = None,
    endpoint_id: uuid.UUID | None = None,
    at: datetime | None = None,
) -> Event:
    """Add the event to `session`: it commits, or rolls back, with the change it reports."""
    event = Event(
        company_id=company_id,
        type=type.value,
        data=data,
        personal=personal or None,
        candidate_id=candidate_id,
        endpoint_id=endpoint_id,
        created_at=at or utcnow(),
    )
    session.add(event)
    return event


_EVENTS = table_of(Event)
_NUMBER = (
    update(_EVENTS).where(_EVENTS.c.id == bindparam("event_id")).values(seq=bindparam("number"))
)


def sequence(session: Session) -> int:
    """Number the committed events that have no number yet, in one transaction, holding the
    counter row's lock (the caller commits). Returns how many were numbered."""
    # The UPDATE takes the row lock first (PostgreSQL: a concurrent sequencer waits here;
    # SQLite: the write lock), so the read below sees every sequencer before this one.
    session.execute(
        update(EventSequence).where(col(EventSequence.id) == 1).values(last=EventSequence.last)
    )
    last = session.exec(select(EventSequence.last).where(EventSequence.id == 1)).one()
    ids = session.exec(
        select(Event.id)
        .where(col(Event.seq).is_(None))
        .order_by(col(Event.created_at), col(Event.id))
        .limit(SEQUENCE_BATCH)
    ).all()
    if ids:
        # One executemany for the batch, not a statement each: the relay numbers every event
        # of a bulk send, in the worker's process.
        session.execute(
            _NUMBER,
            [{"event_id": event_id, "number": last + n} for n, event_id in enumerate(ids, 1)],
        )
        session.execute(
            update(EventSequence).where(col(EventSequence.id) == 1).values(last=last + len(ids))
        )
    return len(ids)


def unsequenced(session: Session) -> bool:
    return (
        session.exec(select(Event.id).where(col(Event.seq).is_(None)).limit(1)).first() is not None
    )


def feed(
    session: Session,
    company_id: uuid.UUID,
    *,
    after: int,
    limit: int,
    types: list[str] | None,
) -> tuple[list[Event], int]:
    """The company's events after `after`, in order, and the cursor to continue from: the last
    one returned, or, when none matched, the newest number seen (nothing to rescan)."""
    query = select(Event).where(
        Event.company_id == company_id,
        col(Event.seq).is_not(None),
        col(Event.seq) > after,
        col(Event.endpoint_id).is_(None),
    )
    if types:
        query = query.where(col(Event.type).in_(types))
    events = list(session.exec(query.order_by(col(Event.seq)).limit(limit)).all())
    if events:
        return events, int(events[-1].seq or after)
    newest = session.exec(select(func.max(Event.seq))).one()
    return events, max(after, int(newest or 0))


def public(event: Event, *, personal: bool) -> dict[str, Any]:
    """The event as the feed and the webhooks show it."""
    data = dict(event.data)
    if personal and event.personal:
        data.update(event.personal)
    return {
        "id": str(event.id),
        "type": event.type,
        "created_at": event.created_at.isoformat().replace("+00:00", "Z"),
        "company_id": str(event.company_id),
        "data": data,
    }


def forget_before(session: Session, cutoff: datetime, batch: int = 1000) -> int:
    """Delete up to `batch` events older than `cutoff`, with their deliveries' records."""
    ids = list(session.exec(select(Event.id).where(col(Event.created_at) < cutoff).limit(batch)))
    if not ids:
        return 0
    deliveries = select(WebhookDelivery.id).where(col(WebhookDelivery.event_id).in_(ids))
    session.execute(delete(WebhookAttempt).where(col(WebhookAttempt.delivery_id).in_(deliveries)))
    session.execute(delete(WebhookDelivery).where(col(WebhookDelivery.event_id).in_(ids)))
    session.execute(delete(Event).where(col(Event.id).in_(ids)))
    return len(ids)


def retention_cutoff(retention: timedelta) -> datetime:
    return utcnow() - retention
