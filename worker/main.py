"""The worker: registers workflows and activities on the task queue (and the webhooks' own
task queue), and runs the event relay beside them."""

from __future__ import annotations

import asyncio
import compileall
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.accounts import Accounts
from activities.bulk import BulkActivities
from activities.connections.oauth import OAuthActivities
from activities.connections.setup import ConnectionActivities
from activities.deliverability import DeliverabilityActivities
from activities.inbound import InboundActivities
from activities.inbound_paths import InboundPathsActivities
from activities.notify import NotifyActivities
from activities.privacy import PrivacyActivities
from activities.send import SendActivities
from activities.webhooks import WebhookActivities
from api.runs import (
    ensure_deliverability_schedule,
    ensure_recheck_schedule,
    ensure_retention_schedule,
    webhook_queue,
)
from core.db import make_engine
from core.security import secret_box
from core.settings import Settings
from core.temporal import connect
from worker.failures import FailureScrubber
from worker.lifecycle import run_until_signal, until_stopped
from worker.relay import relay_forever
from worker.sweeper import sweep_forever
from workflows.bulk import BulkSendWorkflow
from workflows.connections.admin_consent import AdminConsentMailWorkflow
from workflows.connections.oauth import OAuthConnectionSetupWorkflow
from workflows.connections.smtp import SmtpConnectionSetupWorkflow
from workflows.deliverability import DeliverabilityCheckWorkflow
from workflows.inbound import InboundMessagesWorkflow, InboundMessageWorkflow
from workflows.inbound_paths import (
    InboundCheckWorkflow,
    InboundRecheckWorkflow,
    MailboxSyncWorkflow,
)
from workflows.notify import ReplyNotificationsWorkflow
from workflows.privacy import (
    EraseCandidateWorkflow,
    RetentionConsentWorkflow,
    RetentionSweepWorkflow,
)
from workflows.send import SendMessageWorkflow
from workflows.webhooks import WebhookEndpointWorkflow

log = logging.getLogger(__name__)

WORKFLOWS = [
    SendMessageWorkflow,
    SmtpConnectionSetupWorkflow,
    OAuthConnectionSetupWorkflow,
    InboundMessageWorkflow,
    InboundMessagesWorkflow,
    BulkSendWorkflow,
    AdminConsentMailWorkflow,
    ReplyNotificationsWorkflow,
    WebhookEndpointWorkflow,
    EraseCandidateWorkflow,
    RetentionSweepWorkflow,
    RetentionConsentWorkflow,
    InboundCheckWorkflow,
    InboundRecheckWorkflow,
    MailboxSyncWorkflow,
    DeliverabilityCheckWorkflow,
]
# On the webhooks' task queue: endpoints' runs and their deliveries, apart from everything else.
WEBHOOK_WORKFLOWS = [WebhookEndpointWorkflow]
# Deterministic modules the workflows import, loaded once rather than again for every run in
# the sandbox (re-creating their dataclasses and enums took a tenth of the worker's time in a
# profile of a burst of sends). The workflow modules themselves stay sandboxed.
PASSED_THROUGH = (
    "core.statuses",
    "core.run_ids",
    "core.search_attributes",
    "workflows.policies",
    "contracts",
)
# Bounded by the database: each concurrent activity may hold one connection.
MAX_CONCURRENT = 32


def _activity_groups(
    settings: Settings, engine: Engine
) -> tuple[list[Callable[..., Any]], list[Callable[..., Any]]]:
    """(the main task queue's activities, the webhooks'), bound to one engine and key ring."""
    accounts = Accounts(engine, settings, secret_box(settings))
    send = SendActivities(engine, settings, accounts)
    main = [
        *send.all,
        *ConnectionActivities(engine, accounts).all,
        *InboundActivities(engine, settings).all,
        *InboundPathsActivities(engine, accounts).all,
        *OAuthActivities(accounts).all,
        *BulkActivities(engine, settings, accounts).all,
        *NotifyActivities(engine, accounts).all,
        *PrivacyActivities(engine, accounts).all,
        *DeliverabilityActivities(engine, settings).all,
    ]
    return main, WebhookActivities(engine, accounts).all


def activities(settings: Settings, engine: Engine) -> list[Callable[..., Any]]:
    """Every activity of the worker, on either task queue."""
    main, hooks = _activity_groups(settings, engine)
    return [*main, *hooks]


class Workers:
    """What a worker process polls and runs: the main task queue, the webhooks' own (a slow
    endpoint's deliveries never take a slot a send or a routing needs), and the event relay.
    An async context manager (tests), or `run()` until `shutdown()` (the process)."""

    def __init__(self, client: Client, settings: Settings, engine: Engine) -> None:
        self.client, self.settings, self.engine = client, settings, engine
        main, hooks = _activity_groups(settings, engine)
        # Sync DB activities run in this pool; its size bounds concurrent database sessions.
        executor = ThreadPoolExecutor(max_workers=MAX_CONCURRENT, thread_name_prefix="activity")
        runner = SandboxedWorkflowRunner(
            restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSED_THROUGH)
        )
        self.main = Worker(
            client,
            task_queue=settings.task_queue,
            workflows=[w for w in WORKFLOWS if w not in WEBHOOK_WORKFLOWS],
            activities=main,
            activity_executor=executor,
            max_concurrent_activities=MAX_CONCURRENT,
            max_concurrent_local_activities=MAX_CONCURRENT,
            workflow_runner=runner,
            interceptors=[FailureScrubber()],
        )
        self.webhooks = Worker(
            client,
            task_queue=webhook_queue(settings),
            workflows=WEBHOOK_WORKFLOWS,
            activities=hooks,
            activity_executor=executor,
            # Rounds at once; each company takes its fair share (core/webhooks.FairShare).
            max_concurrent_activities=settings.webhook_concurrency,
            workflow_runner=runner,
            interceptors=[FailureScrubber()],
        )
        self._relay: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Workers:
        await self.main.__aenter__()
        await self.webhooks.__aenter__()
        self._relay = asyncio.create_task(relay_forever(self.client, self.settings, self.engine))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._relay is not None:
            self._relay.cancel()
        await self.webhooks.__aexit__(None, None, None)
        await self.main.__aexit__(None, None, None)

    async def run(self) -> None:
        relay = asyncio.ensure_future(relay_forever(self.client, self.settings, self.engine))
        try:
            await asyncio.gather(self.main.run(), self.webhooks.run())
        finally:
            relay.cancel()

    async def shutdown(self) -> None:
        await asyncio.gather(self.main.shutdown(), self.webhooks.shutdown())


def build_worker(client: Client, settings: Settings, engine: Engine) -> Workers:
    precompile()
    return Workers(client, settings, engine)


# What the workflow sandbox imports afresh for every run.
SANDBOXED_PACKAGES = ("workflows", "contracts", "core")


def precompile() -> None:
    """Bytecode for the modules the sandbox imports afresh for every workflow run. Without it
    (PYTHONDONTWRITEBYTECODE, as containers often set, or a first start), every run compiled
    their source again: about a twentieth of the worker's CPU in a profile of a burst of sends.
    An installation that cannot be written to runs as before."""
    root = Path(__file__).resolve().parent.parent
    for package in SANDBOXED_PACKAGES:
        try:
            compileall.compile_dir(root / package, quiet=2)
        except OSError:
            log.info("no bytecode written for %s (read-only?)", package)


async def run_worker(settings: Settings, stop: asyncio.Event) -> None:
    """Poll until `stop` is set, then shut down: in-flight activities get the grace period."""
    runtime = None
    if settings.worker_metrics_port:
        # The SDK's own metrics (workflow and activity counts, latencies, task slots, polls).
        address = f"{settings.worker_metrics_host}:{settings.worker_metrics_port}"
        runtime = Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=address)))
        log.info("worker metrics on http://%s/metrics", address)
    connecting = asyncio.ensure_future(connect(settings, runtime=runtime))
    if not await until_stopped(stop, connecting):
        return
    engine = make_engine(settings.effective_database_url)
    worker = build_worker(connecting.result(), settings, engine)
    await ensure_retention_schedule(connecting.result(), settings)
    await ensure_recheck_schedule(connecting.result(), settings)
    await ensure_deliverability_schedule(connecting.result(), settings)
    log.info("worker polling task queue %s on %s", settings.task_queue, settings.temporal_address)
    running = asyncio.ensure_future(worker.run())
    sweeping = asyncio.ensure_future(sweep_forever(connecting.result(), settings, engine))
    if not await until_stopped(stop, asyncio.shield(running)):
        log.info("worker shutting down")
        sweeping.cancel()
        await worker.shutdown()
    sweeping.cancel()
    await running
    engine.dispose()


def main(settings: Settings) -> None:
    run_until_signal(lambda stop: run_worker(settings, stop), grace=settings.shutdown_grace_seconds)
