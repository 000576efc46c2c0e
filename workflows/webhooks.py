"""WebhookEndpoint: one long-lived run per endpoint, `webhook-endpoint-{endpoint id}`, that
delivers the company's events to it.

One run per endpoint, not per event: a send costs no extra workflow, an operator finds an
endpoint's whole state in one place, and a slow or dead endpoint holds only its own run (its
activities have a task queue of their own, so they never take a send's or a routing's slot).
Each event still has its own retry schedule, kept with its delivery row in the database.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from contracts.webhooks import (
    EVENTS,
    STOP,
    EndpointRef,
    WebhookContract,
    WebhookEndpointInput,
)
from workflows import policies


@workflow.defn(name="webhook-endpoint")
class WebhookEndpointWorkflow:
    """Delivers rounds of due events (the activity queues new ones, attempts what is due in
    order, and schedules each failure's retry), then waits for the `events` signal (the relay
    saw new events; the API enabled or tested the endpoint) or for the earliest retry, at most
    `IDLE_WAIT` in case a signal was lost. A disabled endpoint waits for a signal. Ends when the
    endpoint is deleted (`stop`); continues as new every `ROUNDS_PER_RUN` rounds."""

    @workflow.init
    def __init__(self, input: WebhookEndpointInput) -> None:
        self._poked = True
        self._stopped = False

    @workflow.signal(name=EVENTS)
    def events(self) -> None:
        self._poked = True

    @workflow.signal(name=STOP)
    def stop(self) -> None:
        self._stopped = True

    @workflow.run
    async def run(self, input: WebhookEndpointInput) -> None:
        ref = EndpointRef(input.endpoint_id, input.company_id)
        for _ in range(policies.WEBHOOK_ROUNDS_PER_RUN):
            if self._stopped:
                return
            self._poked = False
            result = await workflow.execute_activity_method(
                WebhookContract.deliver_webhooks,
                ref,
                start_to_close_timeout=policies.WEBHOOK_ROUND_TIMEOUT,
                heartbeat_timeout=policies.WEBHOOK_HEARTBEAT_TIMEOUT,
                retry_policy=policies.DB_STEP_RETRY,
            )
            if result.deleted:
                return
            if result.busy:  # the company's share of rounds is in use: a moment, then again
                pause = policies.WEBHOOK_BUSY_WAIT * (1 + workflow.random().random())
                try:
                    await workflow.wait_condition(lambda: self._stopped, timeout=pause)
                except TimeoutError:
                    pass
                continue
            if result.disabled_now:
                await workflow.execute_activity_method(
                    WebhookContract.tell_admins_endpoint_disabled,
                    ref,
                    start_to_close_timeout=policies.DELIVERY_ATTEMPT_TIMEOUT,
                    schedule_to_close_timeout=timedelta(hours=6),
                    retry_policy=policies.delivery_retry(
                        timedelta(seconds=5), timedelta(minutes=10)
                    ),
                )
            if result.more and not result.disabled:
                continue
            wait = None if result.disabled else policies.WEBHOOK_IDLE_WAIT
            if result.next_due_in is not None and not result.disabled:
                wait = min(policies.WEBHOOK_IDLE_WAIT, timedelta(seconds=result.next_due_in))
            try:
                await workflow.wait_condition(
                    lambda: self._poked or self._stopped,
                    timeout=max(wait, timedelta(milliseconds=100)) if wait else None,
                )
            except TimeoutError:
                pass
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(input)
