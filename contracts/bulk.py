"""bulk-send: one email to many candidates, in batches over reused connections."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from temporalio import activity

PLAN_BULK_SEND = "plan-bulk-send"
SEND_BULK_BATCH = "send-bulk-batch"
FAIL_BULK_BATCH = "fail-bulk-batch"
FINISH_BULK_SEND = "finish-bulk-send"


@dataclass
class BulkSendInput:
    job_id: str
    company_id: str
    batch_size: int = 100
    batches_per_run: int = 40
    parallel_batches: int = 4
    # A batch that stops heartbeating (its worker died) is retried after this long.
    heartbeat_timeout: timedelta = timedelta(seconds=30)
    # Where a continued run picks up; the plan is made once, by the first run.
    next_batch: int = 0
    batches: int = -1
    # Send later: the first run waits for this time (the job is `scheduled`), cancel wakes it.
    send_at: datetime | None = None
    sent: int = 0
    failed: int = 0


@dataclass
class PlanInput:
    job_id: str
    batch_size: int


@dataclass
class BatchInput:
    job_id: str
    batch: int


@dataclass
class BatchResult:
    sent: int = 0
    failed: int = 0
    cancelled: bool = False
    # The mailbox's next slot is far off (a daily cap, a long Retry-After): the batch stopped,
    # and the workflow sleeps until then (epoch seconds) on a durable timer, then resumes it.
    resume_at: float | None = None


@dataclass
class FailBatchInput:
    job_id: str
    batch: int
    reason: str


@dataclass
class FinishInput:
    job_id: str
    cancelled: bool


@dataclass
class BulkProgress:
    status: str = "queued"  # a core.statuses.BulkJobStatus
    batches: int = 0
    next_batch: int = 0
    sent: int = 0
    failed: int = 0


class BulkContract:
    """The activities of bulk-send (activities/bulk.py)."""

    @activity.defn(name=PLAN_BULK_SEND)
    def plan_bulk_send(self, input: PlanInput) -> int:
        """Group the job's messages into batches by sender, compose each once; the count."""
        raise NotImplementedError

    @activity.defn(name=SEND_BULK_BATCH)
    async def send_bulk_batch(self, input: BatchInput) -> BatchResult:
        raise NotImplementedError

    @activity.defn(name=FAIL_BULK_BATCH)
    def fail_bulk_batch(self, input: FailBatchInput) -> BatchResult:
        raise NotImplementedError

    @activity.defn(name=FINISH_BULK_SEND)
    def finish_bulk_send(self, input: FinishInput) -> None:
        raise NotImplementedError
