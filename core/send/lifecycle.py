"""A message's lifecycle: the one place that moves a message between statuses, and writes the
event that says so in the same transaction.

    scheduled ──► queued ──► sending ──► sent ──► bounced
        │            │          │  ▲
        ▼            ▼          ▼  │ (put off by the recipient's server: queued again)
    cancelled    skipped      failed
                 cancelled    cancelled

A message is created `queued` or `scheduled` (the API), or `received` (inbound); from then on
only the functions below change its status. `tests/test_capabilities.py` holds every other
module to that. Single sends move one row through the ORM, except `sent`, one Core statement
by primary key from what the attempt read (`Going`); a bulk batch moves its rows with
SQLAlchemy Core statements, a few per commit (its hot path), under the same rules: a `sent`
message never moves back, and a message an erasure cancelled is never marked `sending`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Engine, bindparam, func, insert, or_, update
from sqlmodel import Session, col, select

from core import events
from core.events import EventType
from core.models import Candidate, Event, Message, table_of, utcnow
from core.statuses import MessageStatus

_MESSAGE = table_of(Message)
_EVENT = table_of(Event)
PENDING = (MessageStatus.QUEUED.value, MessageStatus.SENDING.value)
# What a bounce report may still mark `bounced`: a message that went (or was going) out.
BOUNCEABLE = (MessageStatus.SENT.value, MessageStatus.SENDING.value)


# -- a single send ----------------------------------------------------------------------------


def composed(message: Message) -> None:
    """Its MIME is stored: a queued message is now `sending` (no event: nothing left yet)."""
    if message.status == MessageStatus.QUEUED:
        message.status = MessageStatus.SENDING
    message.updated_at = utcnow()


def begin_attempt(message: Message) -> None:
    """An attempt starts: counted (each attempt, local or regular, numbers its own from 1),
    and under way, so an erasure of the candidate waits for it to end."""
    message.attempts += 1
    message.attempt_started_at = utcnow()


def attempt_failed(message: Message, reason: str) -> None:
    """The attempt ended without sending; the status waits for the run's outcome."""
    message.error = reason
    message.attempt_started_at = None
    message.updated_at = utcnow()


class Going(NamedTuple):
    """A single send whose attempt is under way: what its `sent` and its event need, read
    when the attempt began (so marking it sent reads nothing again)."""

    id: uuid.UUID
    company_id: uuid.UUID
    candidate_id: uuid.UUID | None
    candidate_name: str | None
    from_address: str
    subject: str
    bulk_job_id: uuid.UUID | None


def going(session: Session, message: Message) -> Going:
    candidate = session.get(Candidate, message.candidate_id) if message.candidate_id else None
    return Going(
        message.id,
        message.company_id,
        message.candidate_id,
        candidate.name if candidate else None,
        message.from_address,
        message.subject,
        message.bulk_job_id,
    )


def sent(engine: Engine, message: Going, provider_id: str) -> None:
    """The single send went: `sent`, and message.sent, in one transaction of two statements
    (SQLAlchemy Core, by primary key: the single send's hot path)."""
    now = utcnow()
    event = events.row(
        message.company_id,
        EventType.MESSAGE_SENT,
        events.message_data(
            message.id,
            message.candidate_id,
            MessageStatus.SENT.value,
            bulk_job_id=message.bulk_job_id,
        ),
        personal=events.message_personal(
            message.from_address, message.candidate_name, message.subject
        ),
        candidate_id=message.candidate_id,
    )
    with engine.begin() as connection:
        connection.execute(
            update(_MESSAGE)
            .where(_MESSAGE.c.id == message.id)
            .values(
                status=MessageStatus.SENT,
                error=None,
                attempt_started_at=None,
                sent_at=now,
                provider_message_id=provider_id[:255],
                updated_at=now,
            )
        )
        connection.execute(insert(_EVENT), [event])


def failed(session: Session, message: Message, reason: str) -> None:
    message.status = MessageStatus.FAILED
    message.error = reason
    message.updated_at = utcnow()
    session.add(message)
    events.message_event(session, message, EventType.MESSAGE_FAILED, reason)


def cancelled(session: Session, message: Message, reason: str) -> None:
    message.status = MessageStatus.CANCELLED
    message.error = reason
    message.updated_at = utcnow()
    session.add(message)
    events.message_event(session, message, EventType.MESSAGE_CANCELLED, reason)


def outcome(
    session: Session, message: Message, reported: str, reason: str | None
) -> tuple[str, str | None]:
    """The run's last word on a single send: `sent` stays sent (never downgraded), a
    `cancelled` message stays cancelled, anything else fails with `reason`."""
    if message.status == MessageStatus.SENT or reported == MessageStatus.SENT:
        message.status = MessageStatus.SENT  # deliver-message already wrote it and its event
        message.error = None
        message.updated_at = utcnow()
        session.add(message)
    elif message.status != MessageStatus.CANCELLED:
        failed(session, message, reason or "The message could not be delivered.")
    return message.status, message.error


def bounced(session: Session, message: Message, reason: str, *, tell: bool = True) -> bool:
    """A bounce report (a DSN, or the relay's event) about a message that went out; False when
    it is not one that can bounce (already bounced, or never sent). With `tell=False` the
    caller writes the event later in the same transaction (tell_bounced), once it can name the
    report."""
    if message.status not in BOUNCEABLE:
        return False
    message.status = MessageStatus.BOUNCED
    message.error = reason
    message.updated_at = utcnow()
    session.add(message)
    if tell:
        events.message_event(session, message, EventType.MESSAGE_BOUNCED, reason)
    return True


def tell_bounced(session: Session, message: Message, **extra: Any) -> None:
    """message.bounced for a message a bounce marked in this transaction (the received bounce's
    own id among `extra`)."""
    if message.status == MessageStatus.BOUNCED:
        events.message_event(session, message, EventType.MESSAGE_BOUNCED, message.error, **extra)


def cancel_unsent(
    session: Session, message: Message, reason: str, unsent: Iterable[str], stale: datetime
) -> bool:
    """An erasure's cancel: one conditional UPDATE, so an attempt that began meanwhile (and
    began after `stale`) keeps its message. True when this call cancelled it."""
    moved = session.execute(
        update(Message)
        .where(
            col(Message.id) == message.id,
            col(Message.status).in_(list(unsent)),
            or_(
                col(Message.attempt_started_at).is_(None),
                col(Message.attempt_started_at) < stale,
            ),
        )
        .values(status=MessageStatus.CANCELLED, error=reason, updated_at=utcnow())
    )
    if not moved.rowcount:  # type: ignore[attr-defined]
        return False
    session.refresh(message)
    events.message_event(session, message, EventType.MESSAGE_CANCELLED, reason)
    return True


# -- scheduled messages (send later, the undo window) ----------------------------------------


def change_scheduled(
    session: Session, message_id: uuid.UUID, *conditions: Any, **values: Any
) -> bool:
    """One conditional UPDATE of a message still `scheduled`; False once it moved on."""
    result = session.execute(
        update(Message)
        .where(
            col(Message.id) == message_id,
            col(Message.status) == MessageStatus.SCHEDULED,
            *conditions,
        )
        .values(updated_at=utcnow(), **values)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def release(session: Session, message_id: uuid.UUID, *conditions: Any) -> bool:
    """A scheduled message whose time came is `queued` (no event: message.scheduled said when)."""
    return change_scheduled(session, message_id, *conditions, status=MessageStatus.QUEUED)


def cancel_scheduled(session: Session, message: Message, reason: str) -> bool:
    """The recruiter's cancel of a scheduled message, with message.cancelled; False when it
    lost the race to its time."""
    if not change_scheduled(session, message.id, status=MessageStatus.CANCELLED, error=reason):
        return False
    session.refresh(message)
    events.message_event(session, message, EventType.MESSAGE_CANCELLED, reason)
    return True


# -- bulk sends: rows moved a batch at a time --------------------------------------------------


class Pending(NamedTuple):
    """A message of a batch still to send, with its stored MIME and envelope."""

    id: uuid.UUID
    raw: bytes
    transport: str
    connection_id: uuid.UUID | None
    envelope_from: str
    envelope_to: list[str]
    company_id: str
    # For the message's event: whose it is, and what an opted-in endpoint may see.
    candidate_id: uuid.UUID | None = None
    candidate_name: str | None = None
    subject: str = ""
    bulk_job_id: uuid.UUID | None = None
    attempts: int = 0
    deferred_since: datetime | None = None
    # The job's files as MIME parts, added to `raw` as it is sent (core/mail.splice).
    parts: bytes = b""


class BatchOutcome(NamedTuple):
    """A sent, failed or put-off message of a batch, and the batch's next message to mark
    `sending`. A put-off one (`queued`) has its next try."""

    message: Pending
    status: str
    detail: str
    next_id: uuid.UUID | None
    retry_at: datetime | None = None


# The next message's `sending`, unless it was cancelled meanwhile (an erasure); the attempt is
# under way from then on, so an erasure of its candidate waits for it to end.
_TO_SENDING = (
    update(_MESSAGE)
    .where(_MESSAGE.c.id == bindparam("target_id"), _MESSAGE.c.status.in_(PENDING))
    .values(
        status=MessageStatus.SENDING,
        updated_at=bindparam("now"),
        attempt_started_at=bindparam("now"),
    )
)
# The sent, failed or put-off message, by primary key: one executemany for the outcomes of a
# commit. A put-off message is `queued` again with its next try; the first put-off is kept.
_TO_OUTCOME = (
    update(_MESSAGE)
    .where(_MESSAGE.c.id == bindparam("target_id"))
    .values(
        status=bindparam("status"),
        updated_at=bindparam("now"),
        attempts=_MESSAGE.c.attempts + 1,
        attempt_started_at=None,
        sent_at=bindparam("sent_at"),
        provider_message_id=bindparam("provider_id"),
        error=bindparam("error"),
        next_attempt_at=bindparam("next_at"),
        deferred_since=func.coalesce(_MESSAGE.c.deferred_since, bindparam("since")),
    )
)
# The next messages' `sending`, as _TO_SENDING, telling which moved.
_TO_SENDING_MANY = (
    update(_MESSAGE)
    .where(
        _MESSAGE.c.id.in_(bindparam("target_ids", expanding=True)),
        _MESSAGE.c.status.in_(PENDING),
    )
    .values(
        status=MessageStatus.SENDING,
        updated_at=bindparam("now"),
        attempt_started_at=bindparam("now"),
    )
    .returning(_MESSAGE.c.id)
)


def skip(
    session: Session, company_id: uuid.UUID, job_id: uuid.UUID, skipped: list[tuple[Any, str]]
) -> None:
    """Planned recipients on the suppression list: `skipped` with the reason, and a
    message.skipped event each; `skipped` holds (row, reason), each row with its id and
    candidate_id."""
    if not skipped:
        return
    now = utcnow()
    rows = []
    for row, reason in skipped:
        rows.append(
            {
                "id": row.id,
                "status": MessageStatus.SKIPPED.value,
                "error": reason,
                "updated_at": now,
            }
        )
        events.emit(
            session,
            company_id,
            EventType.MESSAGE_SKIPPED,
            events.message_data(
                row.id,
                row.candidate_id,
                MessageStatus.SKIPPED.value,
                reason=reason,
                bulk_job_id=job_id,
            ),
            candidate_id=row.candidate_id,
        )
    session.execute(update(Message), rows)  # one executemany, by primary key


def to_sending(engine: Engine, message_id: uuid.UUID | None) -> bool:
    """True when the message is now `sending` (it was not cancelled meanwhile)."""
    with engine.begin() as connection:
        moved = connection.execute(_TO_SENDING, {"target_id": message_id, "now": utcnow()})
        return moved.rowcount == 1


def attempt_paused(engine: Engine, message_id: uuid.UUID, paused: bool) -> bool:
    """Mark the attempt of a `sending` message paused (waiting for its slot) or under way
    again; False when it is no longer `sending` (cancelled meanwhile)."""
    with engine.begin() as connection:
        moved = connection.execute(
            update(_MESSAGE)
            .where(_MESSAGE.c.id == message_id, _MESSAGE.c.status == MessageStatus.SENDING)
            .values(attempt_started_at=None if paused else utcnow())
        )
        return moved.rowcount == 1


def requeue(engine: Engine, message_id: uuid.UUID) -> None:
    """A `sending` message not sent after all (its batch stopped, or its slot is far off)."""
    with engine.begin() as connection:
        connection.execute(
            update(_MESSAGE)
            .where(_MESSAGE.c.id == message_id, _MESSAGE.c.status == MessageStatus.SENDING)
            .values(status=MessageStatus.QUEUED, updated_at=utcnow(), attempt_started_at=None)
        )


def advance_many(engine: Engine, outcomes: list[BatchOutcome]) -> list[bool]:
    """Messages' outcomes, their events, and the next ones' `sending`, in one transaction;
    for each, whether its batch's next message is now `sending` (not cancelled meanwhile).

    The outcomes come from the batches running at once, each waiting for its own: a batch
    still sends its next message only after its last one's outcome is committed. SQLAlchemy
    Core, not the ORM: this runs once per message, on the hot path.
    """
    now = utcnow()
    results = []
    event_rows = []
    for outcome in outcomes:
        message, was_sent = outcome.message, outcome.status == MessageStatus.SENT
        results.append(
            {
                "target_id": message.id,
                "status": outcome.status,
                "now": now,
                "sent_at": now if was_sent else None,
                "provider_id": outcome.detail[:255] if was_sent else None,
                "error": None if was_sent else outcome.detail,
                "next_at": outcome.retry_at,
                "since": now if outcome.retry_at is not None else None,
            }
        )
        if outcome.status == MessageStatus.QUEUED:
            continue  # put off: no outcome to tell yet
        event_rows.append(
            events.row(
                uuid.UUID(message.company_id),
                EventType.MESSAGE_SENT if was_sent else EventType.MESSAGE_FAILED,
                events.message_data(
                    message.id,
                    message.candidate_id,
                    outcome.status,
                    reason=None if was_sent else outcome.detail,
                    bulk_job_id=message.bulk_job_id,
                ),
                personal=events.message_personal(
                    message.envelope_from, message.candidate_name, message.subject
                ),
                candidate_id=message.candidate_id,
            )
        )
    following = [outcome.next_id for outcome in outcomes if outcome.next_id is not None]
    with engine.begin() as connection:
        connection.execute(_TO_OUTCOME, results)
        if event_rows:
            connection.execute(insert(_EVENT), event_rows)
        moved = set()
        if following:
            moved = set(
                connection.execute(
                    _TO_SENDING_MANY, {"target_ids": following, "now": now}
                ).scalars()
            )
    return [outcome.next_id in moved for outcome in outcomes]


def end_pending(
    session: Session, job_id: uuid.UUID, status: str, reason: str, batch: int | None = None
) -> int:
    """What is left of a job (or of one batch) ends `failed` (retries ran out) or `cancelled`
    (the job was), each with the reason and its event; how many."""
    query = select(Message).where(Message.bulk_job_id == job_id, col(Message.status).in_(PENDING))
    if batch is not None:
        query = query.where(Message.bulk_batch == batch)
    rows = session.exec(query).all()
    for message in rows:
        if status == MessageStatus.FAILED:
            failed(session, message, reason)
        else:
            cancelled(session, message, reason)
    return len(rows)


def span(delta: timedelta) -> str:
    """How long retries went on, in words: "24 hours", "90 minutes", "5 seconds"."""
    seconds = int(delta.total_seconds())
    if seconds >= 3600:
        return f"{seconds / 3600:g} hours"
    if seconds >= 60:
        return f"{seconds // 60} minutes"
    return f"{seconds} seconds"


def gave_up(attempts: int, total: timedelta, reason: str) -> str:
    """A message's reason once its retries ran out (a single send, or a bulk recipient whose
    server kept putting it off)."""
    return f"Gave up after {attempts} attempts over {span(total)}. Last problem: {reason}"
