"""deliverability-check: started daily by the Schedule of that name. Each live connection's
SPF, DKIM and DMARC are checked again (core/deliverability/checks.py); a report whose status
changed emits connection.deliverability_changed. A connection whose check fails (DNS down) is
tried again by the next day's run."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

from contracts.deliverability import (
    DeliverabilityContract,
    DeliverabilityPage,
    DeliverabilityTarget,
)
from workflows import policies

# A check reads a few DNS records (the resolver's time limit each); retried a few times.
CHECK_TIMEOUT = timedelta(minutes=2)
CHECK_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=10), maximum_interval=timedelta(minutes=1),
    maximum_attempts=3,
)  # fmt: skip
PAGES_PER_RUN = 50


@workflow.defn(name="deliverability-check")
class DeliverabilityCheckWorkflow:
    @workflow.run
    async def run(self, page: DeliverabilityPage) -> None:
        for _ in range(PAGES_PER_RUN):
            batch = await policies.db_step(DeliverabilityContract.find_connections_to_check, page)
            await asyncio.gather(*(_check(connection_id) for connection_id in batch.connection_ids))
            if not batch.more:
                return
            page = DeliverabilityPage(batch.after, page.limit)
        workflow.continue_as_new(page)


async def _check(connection_id: str) -> None:
    try:
        await workflow.execute_activity_method(
            DeliverabilityContract.check_deliverability,
            DeliverabilityTarget(connection_id),
            start_to_close_timeout=CHECK_TIMEOUT,
            retry_policy=CHECK_RETRY,
        )
    except ActivityError:
        workflow.logger.warning("the deliverability check of a connection failed; tomorrow again")
