"""webhook-endpoint: deliver one endpoint's events, retrying each for over a day."""

from __future__ import annotations

from dataclasses import dataclass

from temporalio import activity

DELIVER_WEBHOOKS = "deliver-webhooks"
TELL_ADMINS_ENDPOINT_DISABLED = "tell-admins-endpoint-disabled"
# Signals: new events may be due (the relay, the API on enable and test), the endpoint is gone.
EVENTS = "events"
STOP = "stop"


@dataclass
class WebhookEndpointInput:
    endpoint_id: str
    company_id: str


@dataclass
class EndpointRef:
    endpoint_id: str
    # Its company, whose share of the worker's delivery rounds it takes.
    company_id: str


@dataclass
class DeliveryRound:
    """What one round of deliveries did, and when the next is due."""

    delivered: int = 0
    failed: int = 0
    # More deliveries are due now (the round stopped at its size).
    more: bool = False
    # Seconds until the earliest retry is due; None when nothing waits.
    next_due_in: float | None = None
    # The endpoint is disabled (by its owner, a 410, or days of failures) or deleted.
    disabled: bool = False
    deleted: bool = False
    # This round disabled it: its company's admins are to be told.
    disabled_now: bool = False
    # Nothing was attempted: the company's share of the worker's rounds is in use; try again
    # in a moment.
    busy: bool = False


class WebhookContract:
    """The activities of webhook-endpoint (activities/webhooks.py)."""

    @activity.defn(name=DELIVER_WEBHOOKS)
    async def deliver_webhooks(self, input: EndpointRef) -> DeliveryRound:
        """Queue the endpoint's new events, then attempt what is due, in order."""
        raise NotImplementedError

    @activity.defn(name=TELL_ADMINS_ENDPOINT_DISABLED)
    async def tell_admins_endpoint_disabled(self, input: EndpointRef) -> None:
        raise NotImplementedError
