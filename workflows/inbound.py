"""ReceiveMessage: route one stored inbound message to a candidate, or to Unassigned messages.
ReceiveMessages: the same for the messages of a burst, in one run."""

from __future__ import annotations

from temporalio import workflow
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

from contracts.connections.setup import REDIRECT_SEEN
from contracts.inbound import (
    InboundContract,
    InboundMessageInput,
    InboundMessagesInput,
    ReceiveMessageResult,
    RouteInput,
    RouteManyInput,
)
from core.run_ids import receive_workflow_id, setup_workflow_id
from core.search_attributes import COMPANY_ID, MAIL_STATUS
from core.statuses import InboundKind, InboundState, MessageKind, RoutingState
from workflows import policies
from workflows.connections.setup import tell_admins


@workflow.defn(name="receive-message")
class InboundMessageWorkflow:
    """Parses, classifies and routes mail already stored by the receiver.

    Waits only for the routing activity, which commits the Message, its attachments and any
    bounce marking in one transaction, so a retry after a crash never half-routes. Ends
    `routed` (to a candidate or to Unassigned messages) or `duplicate`.
    """

    @workflow.init
    def __init__(self, input: InboundMessageInput) -> None:
        self._result: ReceiveMessageResult | None = None

    @workflow.query(name="result")
    def result(self) -> ReceiveMessageResult | None:
        return self._result

    @workflow.run
    async def run(self, input: InboundMessageInput) -> ReceiveMessageResult:
        # A local activity: one database transaction, no provider call. It saves the server
        # round trips of a scheduled activity, which dominate routing time on small machines.
        result = await policies.db_step(
            InboundContract.route_inbound_message,
            RouteInput(input.inbound_id, input.closed_application_grace),
            timeout=policies.ROUTE_TIMEOUT,
        )
        self._result = result
        workflow.upsert_search_attributes([MAIL_STATUS.value_set(_mail_status(result))])
        await _wake_setup(result)
        return result


@workflow.defn(name="receive-messages")
class InboundMessagesWorkflow:
    """Routes the messages of one company that arrived in a burst, in one run: the receiver
    starts one for the messages stored while its previous start was under way, so mail that
    trickles in still gets a receive-message run each.

    Each message is routed in its own transaction by one local activity; a message it could not
    route gets a receive-message run of its own (with that workflow's retries), started before
    this run ends. The result lists each message's routing, in the order of the input.
    """

    @workflow.init
    def __init__(self, input: InboundMessagesInput) -> None:
        self._results: list[ReceiveMessageResult | None] = []

    @workflow.query(name="result")
    def result(self) -> list[ReceiveMessageResult | None]:
        return self._results

    @workflow.run
    async def run(self, input: InboundMessagesInput) -> list[ReceiveMessageResult | None]:
        self._results = await policies.db_step(
            InboundContract.route_inbound_messages,
            RouteManyInput(input.inbound_ids, input.closed_application_grace),
            timeout=policies.ROUTE_TIMEOUT,
        )
        for inbound_id, result in zip(input.inbound_ids, self._results, strict=True):
            if result is None:
                await _route_alone(input, inbound_id)
            else:
                await _wake_setup(result)
        left = self._results.count(None)
        workflow.upsert_search_attributes(
            [MAIL_STATUS.value_set(InboundState.STORED if left else InboundState.ROUTED)]
        )
        return self._results


async def _route_alone(input: InboundMessagesInput, inbound_id: str) -> None:
    """A receive-message run for a message the batch could not route; it outlives this run."""
    try:
        await workflow.start_child_workflow(
            InboundMessageWorkflow.run,
            InboundMessageInput(inbound_id, input.company_id, input.closed_application_grace),
            id=receive_workflow_id(inbound_id),
            parent_close_policy=ParentClosePolicy.ABANDON,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(COMPANY_ID, input.company_id),
                    SearchAttributePair(MAIL_STATUS, InboundState.STORED),
                ]
            ),
        )
    except WorkflowAlreadyStartedError:  # the sweeper was first
        workflow.logger.info("inbound %s already has a run of its own", inbound_id)


async def _wake_setup(result: ReceiveMessageResult) -> None:
    """A connection test's message came back (or its delivery report): wake the run waiting
    for it, a setup's or a re-check's (the database already says how it went); and when the
    redirect of a live connection stopped working, tell the company's admins."""
    if not result.connection_id:
        return
    waiting = result.check_workflow_id or setup_workflow_id(result.connection_id)
    handle = workflow.get_external_workflow_handle(waiting)
    try:
        await handle.signal(REDIRECT_SEEN)
    except Exception:  # that run has ended: nothing waits for the news
        workflow.logger.info("the check of %s had no run waiting", result.connection_id)
    if result.tell_admins:
        await tell_admins(result.connection_id)


def _mail_status(result: ReceiveMessageResult) -> str:
    """What an operator filters on: received, unassigned, bounce, auto_reply or duplicate."""
    if result.state == RoutingState.DUPLICATE:
        return InboundKind.DUPLICATE
    if result.state in (RoutingState.CHECK, RoutingState.ANSWER):
        return result.state
    if result.kind != MessageKind.MAIL:
        return result.kind
    return InboundKind.RECEIVED if result.candidate_id else InboundKind.UNASSIGNED
