"""receive-message: route one stored inbound message to a candidate, or to Unassigned;
receive-messages: route several stored together (a burst), each in its own transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import activity

ROUTE_INBOUND_MESSAGE = "route-inbound-message"
ROUTE_INBOUND_MESSAGES = "route-inbound-messages"


@dataclass
class InboundMessageInput:
    inbound_id: str
    company_id: str
    closed_application_grace: timedelta = timedelta(days=14)


@dataclass
class InboundMessagesInput:
    """Mail of one company stored while the start of an earlier routing run was under way."""

    inbound_ids: list[str]
    company_id: str
    closed_application_grace: timedelta = timedelta(days=14)


@dataclass
class RouteInput:
    inbound_id: str
    closed_application_grace: timedelta = timedelta(days=14)


@dataclass
class RouteManyInput:
    inbound_ids: list[str]
    closed_application_grace: timedelta = timedelta(days=14)


@dataclass
class ReceiveMessageResult:
    """Ids and routing facts only; the mail itself stays in the database."""

    state: str  # a core.statuses.RoutingState
    message_id: str | None = None
    candidate_id: str | None = None
    match_reason: str | None = None
    kind: str = "mail"  # a core.statuses.MessageKind
    bounced_message_id: str | None = None
    # A connection test's message came back (state `check`): the connection it verified, and
    # the run waiting for it (a setup's or a re-check's; empty: the setup's).
    connection_id: str | None = None
    check_workflow_id: str | None = None
    # The check bounced: the redirect of a live connection stopped working; tell the admins.
    tell_admins: bool = False


class InboundContract:
    """The activity of receive-message (activities/inbound.py), a local one."""

    @activity.defn(name=ROUTE_INBOUND_MESSAGE)
    def route_inbound_message(self, input: RouteInput) -> ReceiveMessageResult:
        """Parse, classify, match and store, in one transaction."""
        raise NotImplementedError

    @activity.defn(name=ROUTE_INBOUND_MESSAGES)
    def route_inbound_messages(self, input: RouteManyInput) -> list[ReceiveMessageResult | None]:
        """Route each message as route_inbound_message does, in its own transaction; None for
        one that could not be routed (left to a run of its own)."""
        raise NotImplementedError
