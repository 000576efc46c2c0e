"""ReceiveMessage: route one stored inbound message to a candidate, or to Unassigned messages."""

from __future__ import annotations

from temporalio import workflow

from contracts.receive import (
    ReceiveMessageInput,
    ReceiveMessageResult,
    RouteContract,
    RouteInput,
)
from contracts.setup import REDIRECT_SEEN
from core.run_ids import setup_workflow_id
from core.search_attributes import MAIL_STATUS
from core.statuses import InboundKind, MessageKind, RoutingState
from workflows import policies


@workflow.defn(name="receive-message")
class ReceiveMessageWorkflow:
    """Parses, classifies and routes mail already stored by the receiver.

    Waits only for the routing activity, which commits the Message, its attachments and any
    bounce marking in one transaction, so a retry after a crash never half-routes. Ends
    `routed` (to a candidate or to Unassigned messages) or `duplicate`.
    """

    @workflow.init
    def __init__(self, input: ReceiveMessageInput) -> None:
        self._result: ReceiveMessageResult | None = None

    @workflow.query(name="result")
    def result(self) -> ReceiveMessageResult | None:
        return self._result

    @workflow.run
    async def run(self, input: ReceiveMessageInput) -> ReceiveMessageResult:
        # A local activity: one database transaction, no provider call. It saves the server
        # round trips of a scheduled activity, which dominate routing time on small machines.
        result = await policies.db_step(
            RouteContract.route_inbound_message,
            RouteInput(input.inbound_id, input.closed_application_grace),
            timeout=policies.ROUTE_TIMEOUT,
        )
        self._result = result
        workflow.upsert_search_attributes([MAIL_STATUS.value_set(_mail_status(result))])
        if result.connection_id:
            # Wake the setup's redirect leg; the database already says `verified`.
            handle = workflow.get_external_workflow_handle(setup_workflow_id(result.connection_id))
            try:
                await handle.signal(REDIRECT_SEEN)
            except Exception:  # the setup has ended: nothing waits for the news
                workflow.logger.info("setup of %s had already ended", result.connection_id)
        return result


def _mail_status(result: ReceiveMessageResult) -> str:
    """What an operator filters on: received, unassigned, bounce, auto_reply or duplicate."""
    if result.state == RoutingState.DUPLICATE:
        return InboundKind.DUPLICATE
    if result.state == RoutingState.CHECK:
        return RoutingState.CHECK
    if result.kind != MessageKind.MAIL:
        return result.kind
    return InboundKind.RECEIVED if result.candidate_id else InboundKind.UNASSIGNED
