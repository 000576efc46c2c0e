"""Send later, and the undo window: a message `scheduled` until its send_at.

Three parties may move a scheduled message at once: its run (the time came), the recruiter
(cancel, edit) and an erasure. Each move is one conditional UPDATE on `status = 'scheduled'`,
so exactly one of them wins and the others are told the truth: a cancel or an edit that comes
after the run released the message gets "already sent" (409), and a run that finds the message
cancelled ends without sending it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import or_
from sqlmodel import Session, col

from core import events
from core.events import EventType
from core.models import Message, utcnow
from core.send import lifecycle
from core.statuses import MessageStatus

# The run's clock and the database's may differ by a little: a message due within this is due.
CLOCK_SLACK = timedelta(seconds=1)
# Send later: at most this far ahead.
MAX_SEND_AHEAD = timedelta(days=90)
CANCELLED_BY_USER = "Cancelled before it was sent."


class NotScheduled(Exception):
    """The message is no longer scheduled: `status` says what it is now."""

    def __init__(self, status: str) -> None:
        self.status = status
        if status in (MessageStatus.QUEUED, MessageStatus.SENDING, MessageStatus.SENT):
            text = f"already sent (it is {status}): it can no longer be changed or cancelled"
        else:
            text = f"it is {status}, not scheduled: it can no longer be changed or cancelled"
        super().__init__(text)


def due_at(wanted: datetime | None, hold_seconds: int = 0) -> datetime | None:
    """When a new message's (or job's) first attempt is due: `wanted` (in the future, at most
    90 days ahead), else the end of the undo window, else now (None). ValueError says why a
    time is refused."""
    now = utcnow()
    if wanted is not None:
        if wanted <= now:
            raise ValueError("send_at: must be in the future (leave it out to send now)")
        if wanted - now > MAX_SEND_AHEAD:
            raise ValueError(f"send_at: at most {MAX_SEND_AHEAD.days} days ahead")
        return wanted.astimezone(UTC)
    return now + timedelta(seconds=hold_seconds) if hold_seconds else None


def release(session: Session, message_id: uuid.UUID) -> tuple[str, datetime | None]:
    """The run's move at send_at: ("due", None) when the message is now `queued` (or was moved
    on already: a retried step), ("cancelled", None), or ("later", send_at) when it was given a
    later time meanwhile."""
    now = utcnow()
    if lifecycle.release(
        session,
        message_id,
        or_(col(Message.send_at).is_(None), col(Message.send_at) <= now + CLOCK_SLACK),
    ):
        return "due", None
    message = session.get(Message, message_id)
    if message is None or message.status == MessageStatus.CANCELLED:
        return "cancelled", None
    if message.status == MessageStatus.SCHEDULED:
        return "later", message.send_at
    return "due", None


def cancel(session: Session, message: Message, reason: str = CANCELLED_BY_USER) -> None:
    """The recruiter's cancel, with message.cancelled; NotScheduled when it lost the race."""
    if not lifecycle.cancel_scheduled(session, message, reason):
        session.refresh(message)
        raise NotScheduled(message.status)


def edit(session: Session, message: Message, changes: dict[str, Any]) -> None:
    """Subject, text, HTML or send_at of a scheduled message; NotScheduled when too late."""
    if not changes:
        return
    if not lifecycle.change_scheduled(session, message.id, **changes):
        session.refresh(message)
        raise NotScheduled(message.status)
    session.refresh(message)
    if "send_at" in changes:
        events.message_event(
            session, message, EventType.MESSAGE_SCHEDULED, send_at=changes["send_at"].isoformat()
        )
