"""send-message: deliver one outbound message, retrying transient failures for a bounded time."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from temporalio import activity

PREPARE_MESSAGE = "prepare-message"  # resolve the sender and compose, in one step
# The failure type of a send refused before any attempt: the address is on the company's
# suppression list (core/deliverability/suppression.py); its message is the reason to show.
SUPPRESSED = "Suppressed"
# A mailbox's 24-hour quota is spent (core.errors.QuotaExceeded): a deferral, not a retry.
QUOTA_EXCEEDED = "QuotaExceeded"
DELIVER_MESSAGE = "deliver-message"
RECORD_OUTCOME = "record-outcome"
RELEASE_MESSAGE = "release-message"  # a scheduled message's time came: `queued`, or not
# Signal: a scheduled message was cancelled or given another time; the run looks again.
RESCHEDULED = "rescheduled"


@dataclass
class SendMessageInput:
    message_id: str
    company_id: str
    retry_initial_interval: timedelta = timedelta(seconds=2)
    retry_max_interval: timedelta = timedelta(minutes=5)
    retry_total: timedelta = timedelta(hours=6)
    # Send later, or the undo window: the first attempt waits for this time (a durable timer;
    # the database's send_at decides, the signal `rescheduled` only wakes the run to look).
    send_at: datetime | None = None


@dataclass
class SendMessageResult:
    status: str
    error: str | None = None


@dataclass
class MessageRef:
    """The input of an activity that needs only the message: it reads the rest by id."""

    message_id: str


@dataclass
class SenderChoice:
    """The effective sender; addresses only, never credentials. `name` travels between steps
    of an activity only: in history it is empty (it may be an employee's name)."""

    address: str
    name: str
    transport: str
    source: str  # entity, company or platform
    connection_id: str | None = None


@dataclass
class DeliveryResult:
    provider_message_id: str = ""
    already_sent: bool = False
    # The message was cancelled before this attempt (its candidate's data is being erased).
    cancelled: bool = False


@dataclass
class RecordOutcomeInput:
    message_id: str
    status: str
    error: str | None = None
    # True when retries ran out: the reason is then built from the last recorded attempt.
    retries_exhausted: bool = False
    retry_total: timedelta | None = None


@dataclass
class Release:
    """A scheduled message at its time: "due" (now `queued`), "cancelled", or "later" (its
    send_at was moved; wait until `send_at`)."""

    state: str
    send_at: datetime | None = None


@dataclass
class SendMessageProgress:
    status: str = "queued"  # a core.statuses.MessageStatus
    error: str | None = None
    sender: SenderChoice | None = field(default=None)


class SendContract:
    """The activities of send-message (activities/send.py). The database steps are sync: they
    run as local activities, in a thread pool."""

    @activity.defn(name=PREPARE_MESSAGE)
    def prepare_message(self, input: MessageRef) -> SenderChoice:
        """Resolve the sender and compose the MIME once, in one transaction."""
        raise NotImplementedError

    @activity.defn(name=RECORD_OUTCOME)
    def record_outcome(self, input: RecordOutcomeInput) -> SendMessageResult:
        raise NotImplementedError

    @activity.defn(name=RELEASE_MESSAGE)
    def release_message(self, input: MessageRef) -> Release:
        """`scheduled` → `queued` when its send_at has come, in one conditional UPDATE (a
        cancel or an edit racing it either lands first or gets 409)."""
        raise NotImplementedError

    @activity.defn(name=DELIVER_MESSAGE)
    async def deliver_message(self, input: MessageRef) -> DeliveryResult:
        """One delivery attempt through the provider; writes `sent` itself."""
        raise NotImplementedError
