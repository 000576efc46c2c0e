"""SendMessage: deliver one outbound message, retrying transient failures for a bounded time."""

from __future__ import annotations

import builtins
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, RetryState, TimeoutError

from contracts.send import (
    QUOTA_EXCEEDED,
    RESCHEDULED,
    SUPPRESSED,
    DeliveryResult,
    MessageRef,
    RecordOutcomeInput,
    SendContract,
    SendMessageInput,
    SendMessageProgress,
    SendMessageResult,
)
from core.search_attributes import CONNECTION_ID, MAIL_STATUS, PROVIDER
from core.statuses import MessageStatus
from workflows import policies


@workflow.defn(name="send-message")
class SendMessageWorkflow:
    """Resolves the sender, composes the MIME once, then delivers it.

    Waits only for the delivery activity, which retries transient failures with exponential
    backoff until `retry_total`. Ends `sent`, or `failed` with a reason a recruiter can act on.
    Subject and body never enter history: activities read them from the database by id.

    A message to send later (or within the undo window) first waits on a durable timer until
    its send_at, `scheduled`; a cancel or a new time wakes it through the `rescheduled` signal,
    and the database says which (core/send/schedule.py).
    """

    @workflow.init
    def __init__(self, input: SendMessageInput) -> None:
        self._progress = SendMessageProgress()
        self._looked_at = 0  # `rescheduled` signals seen
        self._signals = 0

    @workflow.signal(name=RESCHEDULED)
    def rescheduled(self) -> None:
        self._signals += 1

    async def _wait_until_due(self, input: SendMessageInput) -> bool:
        """Until the message's time; False when it was cancelled meanwhile."""
        self._set_status(MessageStatus.SCHEDULED)
        due = input.send_at
        while True:
            assert due is not None
            left = (due - workflow.now()).total_seconds()
            if left > 0:
                try:
                    await workflow.wait_condition(
                        lambda: self._signals > self._looked_at, timeout=timedelta(seconds=left)
                    )
                except builtins.TimeoutError:
                    pass
                self._looked_at = self._signals
            release = await policies.db_step(
                SendContract.release_message, MessageRef(input.message_id)
            )
            if release.state == "cancelled":
                return False
            if release.state == "due":
                return True
            if release.send_at is None:
                return True
            if release.send_at <= workflow.now():
                # The database's clock is behind the run's: look again in a second.
                await workflow.sleep(1)
            due = release.send_at

    @workflow.query(name="progress")
    def progress(self) -> SendMessageProgress:
        return self._progress

    async def _prepare(self, input: SendMessageInput) -> None:
        """Resolve the sender and compose the MIME once (stored, never in history)."""
        sender = await policies.db_step(SendContract.prepare_message, MessageRef(input.message_id))
        self._progress.sender = sender
        attributes = [PROVIDER.value_set(sender.transport)]
        if sender.connection_id:
            attributes.append(CONNECTION_ID.value_set(sender.connection_id))
        workflow.upsert_search_attributes(attributes)
        self._set_status(MessageStatus.SENDING)

    async def _deliver(self, input: SendMessageInput) -> RecordOutcomeInput:
        """The first attempt in this same workflow task, as a local activity: the common send
        costs one round trip to the server. Only a failure that needs backoff goes on to the
        regular activity, which retries with backoff (and Retry-After) up to the total cap."""
        started = workflow.now()
        try:
            first = await workflow.execute_local_activity_method(
                SendContract.deliver_message,
                MessageRef(input.message_id),
                start_to_close_timeout=policies.DELIVERY_ATTEMPT_TIMEOUT,
                retry_policy=policies.NO_RETRY,
            )
            return _delivered(input, first)
        except (ActivityError, ApplicationError) as err:
            failure = err if isinstance(err, ApplicationError) else err.cause
            if not isinstance(failure, ApplicationError) or _permanent(failure):
                return RecordOutcomeInput(
                    message_id=input.message_id,
                    status=MessageStatus.FAILED,
                    error=_failure_text(err),
                )
            # Transient: wait as the provider asked (or the first backoff), durably.
            await workflow.sleep(failure.next_retry_delay or input.retry_initial_interval)
            if failure.type == QUOTA_EXCEEDED:
                started = workflow.now()  # waiting for a quota is not a retry: cap anew
        try:
            later = await workflow.execute_activity_method(
                SendContract.deliver_message,
                MessageRef(input.message_id),
                start_to_close_timeout=policies.DELIVERY_ATTEMPT_TIMEOUT,
                heartbeat_timeout=policies.DELIVERY_HEARTBEAT_TIMEOUT,
                # The total cap counts from the first attempt, the local one included.
                schedule_to_close_timeout=max(
                    input.retry_total - (workflow.now() - started), timedelta(seconds=1)
                ),
                retry_policy=policies.delivery_retry(
                    input.retry_initial_interval, input.retry_max_interval
                ),
            )
        except ActivityError as err:
            return RecordOutcomeInput(
                message_id=input.message_id,
                status=MessageStatus.FAILED,
                error=_failure_text(err),
                retries_exhausted=_retries_exhausted(err),
                retry_total=input.retry_total,
            )
        return _delivered(input, later)

    def _set_status(self, status: str) -> None:
        self._progress.status = status
        workflow.upsert_search_attributes([MAIL_STATUS.value_set(status)])

    @workflow.run
    async def run(self, input: SendMessageInput) -> SendMessageResult:
        # Two local steps for the common send (prepare, deliver), each a workflow activation:
        # the delivery writes `sent` itself, so only a failure needs a step to record it.
        if input.send_at is not None and not await self._wait_until_due(input):
            self._set_status(MessageStatus.CANCELLED)
            return SendMessageResult(status=MessageStatus.CANCELLED)
        try:
            await self._prepare(input)
        except (ActivityError, ApplicationError) as err:
            # A local activity's non-retryable failure arrives as its ApplicationError.
            # The message cannot be composed (or its rows are gone): it ends here, failed.
            reason = _failure_text(err)
            if _failure_type(err) != SUPPRESSED:  # that one says why in its own words
                reason = f"The message could not be prepared: {reason}"
            outcome = RecordOutcomeInput(
                message_id=input.message_id, status=MessageStatus.FAILED, error=reason
            )
        else:
            outcome = await self._deliver(input)
        if outcome.status == MessageStatus.SENT:
            result = SendMessageResult(status=MessageStatus.SENT)
        else:
            result = await policies.db_step(SendContract.record_outcome, outcome)
        self._progress.error = result.error
        self._set_status(result.status)
        return result


def _delivered(input: SendMessageInput, result: DeliveryResult) -> RecordOutcomeInput:
    """Sent; or cancelled before the attempt (its candidate's data is being erased)."""
    status = MessageStatus.CANCELLED if result.cancelled else MessageStatus.SENT
    return RecordOutcomeInput(message_id=input.message_id, status=status)


def _permanent(failure: ApplicationError) -> bool:
    return failure.non_retryable or (failure.type or "") in policies.PERMANENT_MAIL_ERRORS


def _retries_exhausted(err: ActivityError) -> bool:
    # Either the last attempt timed out against the cap, or the server declined to schedule a
    # retry that would overrun it (then the cause is the last ApplicationError, state TIMEOUT).
    # A transient failure that still ended the activity can only mean the same.
    cause = err.cause
    transient = (
        isinstance(cause, ApplicationError)
        and not cause.non_retryable
        and cause.type not in policies.PERMANENT_MAIL_ERRORS
    )
    return (
        transient
        or isinstance(cause, TimeoutError)
        or err.retry_state in (RetryState.TIMEOUT, RetryState.MAXIMUM_ATTEMPTS_REACHED)
    )


def _failure_type(err: ActivityError | ApplicationError) -> str | None:
    failure = err if isinstance(err, ApplicationError) else err.cause
    return failure.type if isinstance(failure, ApplicationError) else None


def _failure_text(err: ActivityError | ApplicationError) -> str:
    if isinstance(err, ApplicationError):
        return err.message
    cause = err.cause
    # A retry timeout carries the last attempt's failure as its cause.
    while isinstance(cause, TimeoutError) and cause.cause is not None:
        cause = cause.cause
    if isinstance(cause, ApplicationError):
        return cause.message
    return "The message could not be delivered."
