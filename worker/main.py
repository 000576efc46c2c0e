"""The worker: registers workflows and activities on the task queue."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import Engine
from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.accounts import Accounts
from activities.bulk import BulkActivities
from activities.connections import ConnectionActivities
from activities.inbound import InboundActivities
from activities.oauth import OAuthActivities
from activities.send import SendActivities
from core.db import make_engine
from core.security import secret_box
from core.settings import Settings
from core.temporal import connect
from worker.lifecycle import run_until_signal, until_stopped
from worker.sweeper import sweep_forever
from workflows.bulk_send import BulkSendWorkflow
from workflows.consent_request import ConsentRequestMailWorkflow
from workflows.oauth_setup import OAuthConnectionSetupWorkflow
from workflows.receive_message import ReceiveMessageWorkflow
from workflows.send_message import SendMessageWorkflow
from workflows.smtp_setup import SmtpConnectionSetupWorkflow

log = logging.getLogger(__name__)

WORKFLOWS = [
    SendMessageWorkflow,
    SmtpConnectionSetupWorkflow,
    OAuthConnectionSetupWorkflow,
    ReceiveMessageWorkflow,
    BulkSendWorkflow,
    ConsentRequestMailWorkflow,
]
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


def activities(settings: Settings, engine: Engine) -> list[Callable[..., Any]]:
    """Every activity of the task queue, bound to one engine and one key ring."""
    accounts = Accounts(engine, settings, secret_box(settings))
    send = SendActivities(engine, settings, accounts)
    return [
        *send.all,
        *ConnectionActivities(engine, accounts).all,
        *InboundActivities(engine, settings).all,
        *OAuthActivities(accounts).all,
        *BulkActivities(engine, settings, send).all,
    ]


def build_worker(
    client: Client, settings: Settings, engine: Engine, *, task_queue: str | None = None
) -> Worker:
    # Sync DB activities run in this pool; its size bounds concurrent database sessions.
    executor = ThreadPoolExecutor(max_workers=MAX_CONCURRENT, thread_name_prefix="activity")
    return Worker(
        client,
        task_queue=task_queue or settings.task_queue,
        workflows=WORKFLOWS,
        activities=activities(settings, engine),
        activity_executor=executor,
        max_concurrent_activities=MAX_CONCURRENT,
        max_concurrent_local_activities=MAX_CONCURRENT,
        workflow_runner=SandboxedWorkflowRunner(
            restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSED_THROUGH)
        ),
    )


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
