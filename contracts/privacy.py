"""Privacy: erase-candidate (forget a candidate everywhere), retention-sweep (the daily rules),
retention-consent (ask the candidate before forgetting)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import activity

STOP_SENDS = "stop-sends"
ERASE_MESSAGES = "erase-messages"
ERASE_OUTBOX_COPIES = "erase-outbox-copies"
FINISH_ERASURE = "finish-erasure"
CHECKPOINT_DATABASE = "checkpoint-database"
FIND_DUE = "find-due-erasures"
ERASE_DUE = "erase-due"
DELETE_OLD_UNASSIGNED = "delete-old-unassigned"
SEND_RETENTION_CONSENT_ASK = "send-consent-ask"
RECORD_RETENTION_CONSENT = "record-consent"
# Signal to retention-consent: the candidate answered on the page ("keep" or "delete").
ANSWER = "answer"


@dataclass
class EraseInput:
    erasure_id: str
    candidate_id: str
    company_id: str


@dataclass
class ErasureRef:
    erasure_id: str


@dataclass
class StopResult:
    cancelled: int = 0
    # Attempts under way: the erasure waits for them to end before it goes on.
    in_flight: int = 0
    # The runs of scheduled messages just cancelled (ids only): each sleeps until its send_at
    # unless woken, so the erasure wakes them to end now.
    woken: list[str] = field(default_factory=list)


@dataclass
class BatchResult:
    done: int = 0
    more: bool = False


@dataclass
class SweepInput:
    """The daily sweep: candidates first (`batch_size` at a time), then old Unassigned mail.
    A long sweep continues as new, at the stage it reached."""

    batch_size: int = 200
    stage: str = "candidates"  # candidates, unassigned


@dataclass
class DueErasure:
    erasure_id: str
    candidate_id: str
    company_id: str


@dataclass
class DueBatch:
    """Erasures the sweep carries out itself, in one activity; in its result, those that need
    a run of their own (a send under way to the candidate, or thousands of messages)."""

    erasures: list[DueErasure] = field(default_factory=list)


@dataclass
class RetentionConsentAsk:
    candidate_id: str
    company_id: str
    # When the candidate is erased unless they answer.
    deadline_seconds: float


@dataclass
class DueWork:
    """What the sweep found in one batch."""

    erase: list[DueErasure] = field(default_factory=list)
    ask: list[RetentionConsentAsk] = field(default_factory=list)
    more: bool = False


@dataclass
class RetentionConsentInput:
    candidate_id: str
    company_id: str
    # How long the candidate has to answer, and how long "keep" extends the retention.
    answer_wait: timedelta = timedelta(days=14)


@dataclass
class RetentionConsentAnswer:
    candidate_id: str
    answer: str  # keep, delete, none (the deadline passed)


@dataclass
class RetentionConsentOutcome:
    """What the answer means: an erasure to start (None when the candidate is kept)."""

    erase: DueErasure | None = None


class PrivacyContract:
    """The activities of the privacy workflows (activities/privacy.py)."""

    @activity.defn(name=STOP_SENDS)
    def stop_sends(self, input: ErasureRef) -> StopResult:
        """Cancel what has not gone out to the candidate; count the attempts still under way."""
        raise NotImplementedError

    @activity.defn(name=ERASE_MESSAGES)
    def erase_messages(self, input: ErasureRef) -> BatchResult:
        """Erase the content of one batch of the candidate's messages."""
        raise NotImplementedError

    @activity.defn(name=ERASE_OUTBOX_COPIES)
    def erase_outbox_copies(self, input: ErasureRef) -> int:
        raise NotImplementedError

    @activity.defn(name=FINISH_ERASURE)
    def finish_erasure(self, input: ErasureRef) -> None:
        """Anonymise the candidate, forget remembered addresses, audit, and tell (an event)."""
        raise NotImplementedError

    @activity.defn(name=CHECKPOINT_DATABASE)
    def checkpoint_database(self, input: ErasureRef) -> None:
        """SQLite: move the write-ahead log into the database, so no erased page lingers."""
        raise NotImplementedError

    @activity.defn(name=FIND_DUE)
    def find_due_erasures(self, input: SweepInput) -> DueWork:
        """Candidates past their company's retention, and those to ask first."""
        raise NotImplementedError

    @activity.defn(name=ERASE_DUE)
    def erase_due(self, input: DueBatch) -> DueBatch:
        """Erase each candidate of the batch (the steps of erase-candidate, one after the
        other); return those that need an erase-candidate run of their own."""
        raise NotImplementedError

    @activity.defn(name=DELETE_OLD_UNASSIGNED)
    def delete_old_unassigned(self, input: SweepInput) -> BatchResult:
        raise NotImplementedError

    @activity.defn(name=SEND_RETENTION_CONSENT_ASK)
    async def send_retention_consent_ask(self, input: RetentionConsentInput) -> None:
        """Email the candidate the question, with a signed link to the page."""
        raise NotImplementedError

    @activity.defn(name=RECORD_RETENTION_CONSENT)
    def record_retention_consent(self, input: RetentionConsentAnswer) -> RetentionConsentOutcome:
        raise NotImplementedError
