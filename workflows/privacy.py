"""Privacy: forget a candidate everywhere, on request or by the company's retention rules,
asking the candidate first when the company wants that."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

from contracts.privacy import (
    ANSWER,
    DueBatch,
    DueErasure,
    EraseInput,
    ErasureRef,
    PrivacyContract,
    RetentionConsentAnswer,
    RetentionConsentAsk,
    RetentionConsentInput,
    SweepInput,
)
from contracts.send import RESCHEDULED
from core.run_ids import consent_workflow_id, erase_workflow_id
from workflows import policies

A = TypeVar("A")
R = TypeVar("R")


@workflow.defn(name="erase-candidate")
class EraseCandidateWorkflow:
    """`erase-candidate-{candidate id}`. Cancels what has not gone out to the candidate and
    waits for an attempt under way to end; deletes the dev outbox copies; erases the content of
    every message to or from the candidate in batches (subjects, bodies, headers, attachments,
    raw inbound bytes, events' personal fields); then anonymises the candidate, forgets their
    remembered addresses, writes an audit line and a `candidate.erased` event, and truncates
    SQLite's write-ahead log. Ids, counts and statuses stay.

    Every step is a local activity (a database transaction, no round trip to the server) and
    idempotent, so a crash resumes where it was; a step that keeps failing (the database down
    for half an hour) waits and tries again: an erasure never gives up. Ends when the erasure
    is `done`. Its history holds ids only."""

    @workflow.run
    async def run(self, input: EraseInput) -> None:
        ref = ErasureRef(input.erasure_id)
        while True:
            stopped = await _step(PrivacyContract.stop_sends, ref)
            if stopped.woken:
                await _wake(stopped.woken)
            if not stopped.in_flight:
                break
            await workflow.sleep(policies.ERASE_IN_FLIGHT_POLL)
        await _step(PrivacyContract.erase_outbox_copies, ref)
        while (await _step(PrivacyContract.erase_messages, ref)).more:
            pass
        await _step(PrivacyContract.finish_erasure, ref)
        await _step(PrivacyContract.checkpoint_database, ref)


async def _wake(run_ids: list[str]) -> None:
    """Wake the runs of cancelled scheduled messages: each looks at its row and ends
    `cancelled` now, not at its send_at. A run already closed is left be."""
    for run_id in run_ids:
        try:
            await workflow.get_external_workflow_handle(run_id).signal(RESCHEDULED)
        except Exception:
            workflow.logger.info("a cancelled message's run had already ended")


async def _batch(method: Callable[[Any, A], R], arg: A) -> R:
    """A regular activity over a batch: minutes at most, retried while the database is down."""
    return await workflow.execute_activity_method(
        method,
        arg,
        start_to_close_timeout=policies.ERASE_BATCH_TIMEOUT,
        retry_policy=policies.DB_STEP_RETRY,
    )


async def _step(method: Callable[[Any, ErasureRef], R], ref: ErasureRef) -> R:
    while True:
        try:
            return await policies.db_step(method, ref, timeout=policies.ERASE_BATCH_TIMEOUT)
        except ActivityError as err:
            cause = err.cause
            if isinstance(cause, ApplicationError) and cause.type == "RowMissing":
                raise  # the erasure was withdrawn before it began (its row is gone)
            workflow.logger.warning("an erasure step keeps failing; trying again later")
            await workflow.sleep(policies.ERASE_STEP_PAUSE)


async def start_erasure(due: DueErasure) -> None:
    """A child that outlives its parent; a running one for the same candidate is left be."""
    try:
        await workflow.start_child_workflow(
            EraseCandidateWorkflow.run,
            EraseInput(due.erasure_id, due.candidate_id, due.company_id),
            id=erase_workflow_id(due.candidate_id),
            parent_close_policy=ParentClosePolicy.ABANDON,
        )
    except WorkflowAlreadyStartedError:
        workflow.logger.info("the erasure of %s is under way", due.candidate_id)


@workflow.defn(name="retention-sweep")
class RetentionSweepWorkflow:
    """Started every day by the `privacy-retention` Schedule. Finds, in batches, the candidates
    past their company's retention rule and erases them: most within the sweep's own
    activities, one batch at a time; a candidate with a send under way, or thousands of
    messages, through an `erase-candidate` run of its own. When the company asks first, starts
    a `retention-consent` run for each instead. Then deletes Unassigned messages older than the
    company's limit. Safe to run twice: an erasure or a question already under way is left be.
    Changing a rule applies at the next run. Continues as new every few batches, so a sweep of
    any size keeps a short history."""

    @workflow.run
    async def run(self, input: SweepInput) -> None:
        if input.stage == "candidates":
            for _ in range(policies.SWEEP_BATCHES_PER_RUN):
                due = await _batch(PrivacyContract.find_due_erasures, input)
                if due.erase:
                    own_runs = await _batch(PrivacyContract.erase_due, DueBatch(due.erase))
                    # Started together: one workflow task for the batch, not one per candidate.
                    await asyncio.gather(*(start_erasure(e) for e in own_runs.erasures))
                await asyncio.gather(*(_ask(ask) for ask in due.ask))
                if not due.more:
                    break
            else:
                workflow.continue_as_new(input)
        while (await _batch(PrivacyContract.delete_old_unassigned, input)).more:
            if workflow.info().is_continue_as_new_suggested():
                workflow.continue_as_new(SweepInput(input.batch_size, stage="unassigned"))


async def _ask(ask: RetentionConsentAsk) -> None:
    try:
        await workflow.start_child_workflow(
            RetentionConsentWorkflow.run,
            RetentionConsentInput(
                ask.candidate_id, ask.company_id, timedelta(seconds=ask.deadline_seconds)
            ),
            id=consent_workflow_id(ask.candidate_id),
            parent_close_policy=ParentClosePolicy.ABANDON,
        )
    except WorkflowAlreadyStartedError:
        pass  # asked already; that run waits for the answer


@workflow.defn(name="retention-consent")
class RetentionConsentWorkflow:
    """`retention-consent-{candidate id}`. Emails the candidate, before the retention rule
    erases them, whether their application may be kept, with a link to a page with two
    buttons; waits durably for the answer (`answer` signal) or the deadline. "keep" extends the
    retention by the company's period; "delete" or no answer erases the candidate."""

    @workflow.init
    def __init__(self, input: RetentionConsentInput) -> None:
        self._answer: str | None = None

    @workflow.signal(name=ANSWER)
    def answer(self, answer: str) -> None:
        if self._answer is None and answer in ("keep", "delete"):
            self._answer = answer

    @workflow.query(name="answer")
    def current(self) -> str | None:
        return self._answer

    @workflow.run
    async def run(self, input: RetentionConsentInput) -> str:
        await workflow.execute_activity_method(
            PrivacyContract.send_retention_consent_ask,
            input,
            start_to_close_timeout=policies.DELIVERY_ATTEMPT_TIMEOUT,
            schedule_to_close_timeout=policies.NOTIFY_SCHEDULE_TO_CLOSE,
            retry_policy=policies.delivery_retry(
                policies.NOTIFY_RETRY_INITIAL, policies.NOTIFY_RETRY_MAX
            ),
        )
        try:
            await workflow.wait_condition(
                lambda: self._answer is not None, timeout=input.answer_wait
            )
        except TimeoutError:
            pass
        answer = self._answer or "none"
        outcome = await policies.db_step(
            PrivacyContract.record_retention_consent,
            RetentionConsentAnswer(input.candidate_id, answer),
        )
        if outcome.erase is not None:
            await start_erasure(outcome.erase)
        return answer
