"""The ways replies reach Recruitmail, kept working (core/inbound_paths/paths.py): a live
connection's redirect checked again, on demand and every day; and its mailbox read.

- `inbound-check-{connection id}`: sends the round trip's check message to the address's mail
  exchanger and waits, on a durable timer, for it to come back (the `redirect-seen` signal,
  from the receive run that recognised it or its delivery report). It always ends in
  `verified`, `not_seen` or `blocked`, with a reason; the connection keeps sending.
- `inbound-recheck`: started daily by the Schedule of that name; starts an `inbound-check` for
  every live connection with the redirect path, a page at a time.
- `mailbox-sync-{connection id}`: reads the connected mailbox (below).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ActivityError, WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

from contracts.connections.setup import (
    REDIRECT_SEEN,
    ConnectionSetupContract,
    RecheckInput,
    RecheckPage,
    RedirectInput,
)
from contracts.inbound import InboundMessagesInput
from contracts.inbound_paths import (
    NOTIFY,
    STOP,
    InboundPathsContract,
    Nudge,
    SyncInput,
    SyncResult,
    SyncRound,
)
from core.run_ids import inbound_check_workflow_id, receive_batch_workflow_id
from core.search_attributes import COMPANY_ID, CONNECTION_ID, MAIL_STATUS
from core.statuses import InboundState
from workflows import policies
from workflows.connections.setup import conclude_not_seen, tell_admins
from workflows.inbound import InboundMessagesWorkflow

# The check message goes out once: a second one would only race the first.
CHECK_SEND_TIMEOUT = timedelta(minutes=3)


@workflow.defn(name="inbound-check")
class InboundCheckWorkflow:
    def __init__(self) -> None:
        self._seen = False

    @workflow.signal(name=REDIRECT_SEEN)
    def redirect_seen(self) -> None:
        """The check message (or its delivery report) came back; the database says how."""
        self._seen = True

    @workflow.run
    async def run(self, input: RecheckInput) -> None:
        redirect = RedirectInput(input.connection_id, input.redirect_wait)
        outcome = await workflow.execute_activity_method(
            ConnectionSetupContract.check_redirect,
            redirect,
            start_to_close_timeout=CHECK_SEND_TIMEOUT,
            retry_policy=policies.NO_RETRY,
        )
        if outcome.waiting:
            try:
                await workflow.wait_condition(lambda: self._seen, timeout=input.redirect_wait)
                return
            except TimeoutError:
                await conclude_not_seen(redirect)
        elif outcome.tell_admins:
            await tell_admins(input.connection_id)


@workflow.defn(name="inbound-recheck")
class InboundRecheckWorkflow:
    """Started daily by the `inbound-recheck` Schedule. A check already under way for a
    connection is left be; the checks run on by themselves (they outlive this run)."""

    @workflow.run
    async def run(self, page: RecheckPage) -> None:
        for _ in range(policies.SWEEP_BATCHES_PER_RUN):
            batch = await policies.db_step(ConnectionSetupContract.find_redirects_to_recheck, page)
            # Started together: one workflow task for the page, not one per connection.
            await asyncio.gather(*(_start_check(check) for check in batch.checks))
            if not batch.more:
                return
            page = RecheckPage(batch.after, page.limit, page.redirect_wait, page.company_id)
        workflow.continue_as_new(page)


async def _start_check(check: RecheckInput) -> None:
    try:
        await workflow.start_child_workflow(
            InboundCheckWorkflow.run,
            check,
            id=inbound_check_workflow_id(check.connection_id),
            parent_close_policy=ParentClosePolicy.ABANDON,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(COMPANY_ID, check.company_id),
                    SearchAttributePair(CONNECTION_ID, check.connection_id),
                    SearchAttributePair(MAIL_STATUS, "checking"),
                ]
            ),
        )
    except WorkflowAlreadyStartedError:
        pass  # a check of this connection is under way (asked for by an admin)


# -- mailbox sync ---------------------------------------------------------------------------

# Rounds in one run before it continues as new (its history stays short).
SYNC_ROUNDS_PER_RUN = 200
# One round reads up to its page limit; a slow provider gets this long.
SYNC_ROUND_TIMEOUT = timedelta(minutes=10)
SYNC_HEARTBEAT_TIMEOUT = timedelta(seconds=20)
# A round that fails (the database, the worker) is tried again a few times, then the run
# waits for the next poll: the sync never ends on a failure.
SYNC_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    maximum_interval=timedelta(minutes=1),
    maximum_attempts=5,
)


@workflow.defn(name="mailbox-sync")
class MailboxSyncWorkflow:
    """`mailbox-sync-{connection id}`: reads the connected mailbox whenever the provider
    notifies (the `notify` signal, from the API's notification endpoints) and at least every
    poll interval, so a lost notification delays a message by one poll at most. Each imported
    message is stored, then routed by a receive-messages run, as mail from the receiver is.
    Ends when the path is turned off (`stop`) or the connection ends."""

    @workflow.init
    def __init__(self, input: SyncInput) -> None:
        self._nudges: list[str] = []
        self._stop = False
        self._state = "starting"

    @workflow.signal(name=NOTIFY)
    def notify(self, nudge: Nudge) -> None:
        self._nudges.append(nudge.reason)

    @workflow.signal(name=STOP)
    def stop(self) -> None:
        self._stop = True

    @workflow.query(name="state")
    def state(self) -> str:
        return self._state

    @workflow.run
    async def run(self, input: SyncInput) -> None:
        for _ in range(SYNC_ROUNDS_PER_RUN):
            nudges, self._nudges = self._nudges, []
            result = await self._round(input, nudges)
            if result is not None:
                self._state = result.state
                if result.inbound_ids:
                    await _route(input, result.inbound_ids)
                if result.tell_admins:
                    await tell_admins(input.connection_id)
                if result.stop:
                    return
                if result.more:
                    continue
            if self._stop:
                return
            wait = input.poll_interval
            if result is not None and result.wait_seconds:
                wait = min(wait, timedelta(seconds=result.wait_seconds))
            try:
                await workflow.wait_condition(
                    lambda: bool(self._nudges) or self._stop, timeout=wait
                )
            except TimeoutError:
                pass
            if self._stop:
                return
        workflow.continue_as_new(input)

    async def _round(self, input: SyncInput, nudges: list[str]) -> SyncResult | None:
        try:
            return await workflow.execute_activity_method(
                InboundPathsContract.sync_mailbox,
                SyncRound(
                    input.connection_id,
                    stale_after=input.stale_after,
                    resync_days=input.resync_days,
                    closed_application_grace=input.closed_application_grace,
                    renew_channel="reauthorize" in nudges,
                    new_channel="removed" in nudges,
                ),
                start_to_close_timeout=SYNC_ROUND_TIMEOUT,
                heartbeat_timeout=SYNC_HEARTBEAT_TIMEOUT,
                retry_policy=SYNC_RETRY,
            )
        except ActivityError:
            workflow.logger.warning("a mailbox sync round failed; reading again at the next poll")
            return None


async def _route(input: SyncInput, inbound_ids: list[str]) -> None:
    """Imported messages are routed as received ones are: a receive-messages run of their own,
    which outlives this one (the sweeper starts any it could not)."""
    try:
        await workflow.start_child_workflow(
            InboundMessagesWorkflow.run,
            InboundMessagesInput(inbound_ids, input.company_id, input.closed_application_grace),
            id=receive_batch_workflow_id(inbound_ids[0]),
            parent_close_policy=ParentClosePolicy.ABANDON,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(COMPANY_ID, input.company_id),
                    SearchAttributePair(MAIL_STATUS, InboundState.STORED),
                ]
            ),
        )
    except WorkflowAlreadyStartedError:
        workflow.logger.info("routing of %s was already started", inbound_ids[0])
