"""reply-notifications: tell a recruiter (or the admins) that a candidate wrote, at most one
email per candidate per coalescing window."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import activity

SEND_REPLY_NOTIFICATION = "send-reply-notification"
REPLY = "reply"  # signal: a message to tell about (its id)


@dataclass
class ReplyNotificationsInput:
    company_id: str
    candidate_id: str | None  # None: the company's Unassigned messages
    coalesce: timedelta = timedelta(minutes=10)
    # Carried over when the run continues as new: replies not told yet, and the latest ids
    # already seen (the relay delivers at least once).
    pending: list[str] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)
    # Continue as new past this many history events (signals count).
    history_limit: int = 2_000


@dataclass
class NotificationBatch:
    company_id: str
    candidate_id: str | None
    message_ids: list[str] = field(default_factory=list)


class NotifyContract:
    """The activity of reply-notifications (activities/notify.py)."""

    @activity.defn(name=SEND_REPLY_NOTIFICATION)
    async def send_reply_notification(self, input: NotificationBatch) -> int:
        """Email whoever is to hear about these messages; how many emails went out."""
        raise NotImplementedError
