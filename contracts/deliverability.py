"""deliverability-check: each live connection's SPF, DKIM and DMARC checked again daily
(core/deliverability/checks.py), by the Schedule of that name."""

from __future__ import annotations

from dataclasses import dataclass, field

from temporalio import activity

FIND_CONNECTIONS_TO_CHECK = "find-connections-to-check"
CHECK_DELIVERABILITY = "check-deliverability"


@dataclass
class DeliverabilityPage:
    """Live connections after `after` (an id), in id order."""

    after: str = ""
    limit: int = 100


@dataclass
class DeliverabilityBatch:
    connection_ids: list[str] = field(default_factory=list)
    more: bool = False
    after: str = ""


@dataclass
class DeliverabilityTarget:
    connection_id: str


@dataclass
class DeliverabilityOutcome:
    status: str  # pass, warn, fail; "" when the connection is gone
    changed: bool = False


class DeliverabilityContract:
    @activity.defn(name=FIND_CONNECTIONS_TO_CHECK)
    def find_connections_to_check(self, input: DeliverabilityPage) -> DeliverabilityBatch:
        raise NotImplementedError

    @activity.defn(name=CHECK_DELIVERABILITY)
    def check_deliverability(self, input: DeliverabilityTarget) -> DeliverabilityOutcome:
        raise NotImplementedError
