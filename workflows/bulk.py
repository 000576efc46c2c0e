"""BulkSend: one email to many candidates, in batches over reused connections, throttled per
mailbox, with nothing lost or doubled."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from contracts.bulk import (
    BatchInput,
    BatchResult,
    BulkContract,
    BulkProgress,
    BulkSendInput,
    FailBatchInput,
    FinishInput,
    PlanInput,
)
from core.search_attributes import MAIL_STATUS
from core.statuses import BulkJobStatus, MessageStatus
from workflows import policies


@workflow.defn(name="bulk-send")
class BulkSendWorkflow:
    """Plans batches (grouped by effective sender), then runs them one by one.

    Each batch is an activity that reuses one connection, heartbeats its progress and records
    every message's status before and after its send, so a retry after a crash skips what was
    sent. Up to `parallel_batches` run at once. Waits for nothing else; a `cancel` update
    stops before the next batch (a running batch stops within a second). Ends `completed` or
    `cancelled`; large jobs continue as new every `batches_per_run` batches.
    """

    @workflow.init
    def __init__(self, input: BulkSendInput) -> None:
        self._progress = BulkProgress(
            status=BulkJobStatus.RUNNING,
            batches=max(input.batches, 0),
            next_batch=input.next_batch,
            sent=input.sent,
            failed=input.failed,
        )
        self._cancel = False

    @workflow.query(name="progress")
    def progress(self) -> BulkProgress:
        return self._progress

    @workflow.update(name="cancel")
    async def cancel(self) -> BulkProgress:
        self._cancel = True
        return self._progress

    @cancel.validator
    def _validate_cancel(self) -> None:
        if self._progress.status in (BulkJobStatus.COMPLETED, BulkJobStatus.CANCELLED):
            raise ApplicationError(f"The job has ended ({self._progress.status}).")

    async def _wait_until(self, send_at: datetime) -> None:
        """Send later: a durable timer until `send_at`, cut short by a cancel."""
        self._progress.status = BulkJobStatus.SCHEDULED
        left = (send_at - workflow.now()).total_seconds()
        if left > 0:
            try:
                await workflow.wait_condition(lambda: self._cancel, timeout=timedelta(seconds=left))
            except TimeoutError:
                pass
        self._progress.status = BulkJobStatus.RUNNING

    @workflow.run
    async def run(self, input: BulkSendInput) -> BulkProgress:
        batches = input.batches
        if batches < 0 and input.send_at is not None:
            await self._wait_until(input.send_at)
        if batches < 0 and self._cancel:
            pass  # cancelled while scheduled: nothing planned, every message `cancelled`
        elif batches < 0:
            batches = await workflow.execute_activity_method(
                BulkContract.plan_bulk_send,
                PlanInput(input.job_id, input.batch_size),
                start_to_close_timeout=policies.BULK_PLAN_TIMEOUT,
                retry_policy=policies.DB_STEP_RETRY,
                schedule_to_close_timeout=policies.DB_STEP_SCHEDULE_TO_CLOSE,
            )
            self._progress.batches = batches
            workflow.upsert_search_attributes([MAIL_STATUS.value_set(MessageStatus.SENDING)])

        run_end = min(batches, input.next_batch + input.batches_per_run)
        # Up to `parallel_batches` batches at once, each over its own connection: the
        # throughput of one reused connection is bound by round trips, not bandwidth. Each
        # batch keeps at most one send in flight, so a crash can double at most that many.
        waiting = list(range(input.next_batch, run_end))
        running: set[asyncio.Future[None]] = set()
        while (waiting and not self._cancel) or running:
            while waiting and not self._cancel and len(running) < input.parallel_batches:
                running.add(asyncio.ensure_future(self._run_batch(input, waiting.pop(0))))
            done, still = await workflow.wait(running, return_when=asyncio.FIRST_COMPLETED)
            running = set(still)
            for task in done:
                task.result()  # a batch never raises; this surfaces a bug as a task failure
        batch = run_end
        self._progress.next_batch = batch

        if batch < batches and not self._cancel:
            await workflow.wait_condition(workflow.all_handlers_finished)
            workflow.continue_as_new(
                dataclasses.replace(
                    input,
                    next_batch=batch,
                    batches=batches,
                    sent=self._progress.sent,
                    failed=self._progress.failed,
                )
            )

        await policies.db_step(
            BulkContract.finish_bulk_send, FinishInput(input.job_id, self._cancel)
        )
        self._progress.status = BulkJobStatus.CANCELLED if self._cancel else BulkJobStatus.COMPLETED
        workflow.upsert_search_attributes([MAIL_STATUS.value_set(self._progress.status)])
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._progress

    async def _run_batch(self, input: BulkSendInput, batch: int) -> None:
        """One batch to its end: resumed after a throttle's far-off slot, counted once done."""
        while True:
            result = await self._send_batch(input, batch)
            self._progress.sent += result.sent
            self._progress.failed += result.failed
            if result.cancelled:
                self._cancel = True
                return
            if result.resume_at is None:
                return
            wait = result.resume_at - workflow.now().timestamp()
            try:
                await workflow.wait_condition(
                    lambda: self._cancel, timeout=timedelta(seconds=max(wait, 1))
                )
            except TimeoutError:
                pass
            if self._cancel:
                return

    async def _send_batch(self, input: BulkSendInput, batch: int) -> BatchResult:
        job_id = input.job_id
        try:
            return await workflow.execute_activity_method(
                BulkContract.send_bulk_batch,
                BatchInput(job_id, batch),
                start_to_close_timeout=policies.BULK_BATCH_TIMEOUT,
                heartbeat_timeout=input.heartbeat_timeout,
                schedule_to_close_timeout=policies.BULK_BATCH_SCHEDULE_TO_CLOSE,
                retry_policy=policies.BULK_BATCH_RETRY,
            )
        except ActivityError as err:
            # Retries ran out (or a permanent error such as revoked credentials): what is left
            # of the batch fails with the reason, and the job goes on with the next batch.
            cause = err.cause
            reason = cause.message if isinstance(cause, ApplicationError) else str(cause)
            return await policies.db_step(
                BulkContract.fail_bulk_batch,
                FailBatchInput(job_id, batch, reason or "The batch could not be sent."),
            )
