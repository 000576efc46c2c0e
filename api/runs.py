"""Starting runs from outside Temporal (the API and the inbound receiver): the one place that
sets a run's id policies and its search attributes.

Not a workflow module: it uses the Temporal client. It imports only temporalio, the contracts
and the workflow classes (for their typed `run`), so the API and the receiver can share it
without importing the worker.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable
from datetime import timedelta
from typing import Any, Protocol

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from contracts.bulk import BulkSendInput
from contracts.connections.setup import RecheckInput, RecheckPage
from contracts.deliverability import DeliverabilityPage
from contracts.inbound import InboundMessageInput, InboundMessagesInput
from contracts.inbound_paths import NOTIFY, STOP, Nudge, SyncInput
from contracts.privacy import EraseInput, SweepInput
from contracts.send import SendMessageInput
from contracts.webhooks import EVENTS, WebhookEndpointInput
from core.run_ids import (
    DELIVERABILITY_SCHEDULE_ID,
    INBOUND_RECHECK_SCHEDULE_ID,
    RETENTION_SCHEDULE_ID,
    erase_workflow_id,
    inbound_check_workflow_id,
    mailbox_sync_workflow_id,
    receive_batch_workflow_id,
    receive_workflow_id,
    webhook_workflow_id,
)
from core.search_attributes import COMPANY_ID, CONNECTION_ID, MAIL_STATUS, PROVIDER
from core.settings import Settings
from core.statuses import BulkJobStatus, InboundState, MessageStatus
from workflows.bulk import BulkSendWorkflow
from workflows.deliverability import DeliverabilityCheckWorkflow
from workflows.inbound import InboundMessagesWorkflow, InboundMessageWorkflow
from workflows.inbound_paths import (
    InboundCheckWorkflow,
    InboundRecheckWorkflow,
    MailboxSyncWorkflow,
)
from workflows.privacy import EraseCandidateWorkflow, RetentionSweepWorkflow
from workflows.send import SendMessageWorkflow
from workflows.webhooks import WebhookEndpointWorkflow

log = logging.getLogger(__name__)


async def start_run(
    client: Client,
    run: Callable[[Any, Any], Awaitable[Any]],
    arg: Any,
    *,
    workflow_id: str,
    task_queue: str,
    company_id: str,
    status: str,
    connection_id: str | None = None,
    provider: str | None = None,
    id_conflict_policy: WorkflowIDConflictPolicy = WorkflowIDConflictPolicy.FAIL,
    id_reuse_policy: WorkflowIDReusePolicy = WorkflowIDReusePolicy.ALLOW_DUPLICATE,
) -> bool:
    """Start `run` under `workflow_id`, filterable by company, status and connection.

    False when the id policies refused the start because a run with this id exists (with
    USE_EXISTING, a running one is taken as is, and that answers True). Ids are new per row,
    so a refusal is a retried start of our own. Any other failure raises.
    """
    pairs = [SearchAttributePair(COMPANY_ID, company_id), SearchAttributePair(MAIL_STATUS, status)]
    if connection_id:
        pairs.append(SearchAttributePair(CONNECTION_ID, connection_id))
    if provider:
        pairs.append(SearchAttributePair(PROVIDER, provider))
    try:
        await client.start_workflow(
            run,
            arg,
            id=workflow_id,
            task_queue=task_queue,
            id_conflict_policy=id_conflict_policy,
            id_reuse_policy=id_reuse_policy,
            search_attributes=TypedSearchAttributes(pairs),
        )
    except WorkflowAlreadyStartedError:
        return False
    return True


async def signal_start(
    client: Client,
    run: Callable[[Any, Any], Awaitable[Any]],
    arg: Any,
    *,
    workflow_id: str,
    signal: str,
    signal_args: list[Any],
    settings: Settings,
    company_id: str,
    task_queue: str | None = None,
) -> None:
    """Signal a run, starting it first when none is running under `workflow_id`."""
    await client.start_workflow(
        run,
        arg,
        id=workflow_id,
        task_queue=task_queue or settings.task_queue,
        start_signal=signal,
        start_signal_args=signal_args,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=TypedSearchAttributes([SearchAttributePair(COMPANY_ID, company_id)]),
    )


async def _ensure_daily(
    client: Client, schedule_id: str, run: Any, arg: Any, workflow_id: str, task_queue: str
) -> None:
    """A Schedule that starts `run(arg)` every day (visible under Schedules in the UI); created
    once, left as it is when it exists (an operator may have paused it)."""
    try:
        await client.create_schedule(
            schedule_id,
            Schedule(
                action=ScheduleActionStartWorkflow(run, arg, id=workflow_id, task_queue=task_queue),
                spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(days=1))]),
                policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
            ),
        )
    except ScheduleAlreadyRunningError:
        pass


async def ensure_retention_schedule(
    client: Client, settings: Settings, schedule_id: str = RETENTION_SCHEDULE_ID
) -> None:
    """The retention sweep, every day (`privacy-retention`)."""
    await _ensure_daily(
        client, schedule_id, RetentionSweepWorkflow.run, SweepInput(), "retention-sweep",
        settings.task_queue,
    )  # fmt: skip


async def ensure_recheck_schedule(
    client: Client, settings: Settings, schedule_id: str = INBOUND_RECHECK_SCHEDULE_ID
) -> None:
    """Every live redirect checked again, every day (`inbound-recheck`)."""
    await _ensure_daily(
        client, schedule_id, InboundRecheckWorkflow.run,
        RecheckPage(redirect_wait=settings.redirect_check_wait), "inbound-recheck",
        settings.task_queue,
    )  # fmt: skip


async def ensure_deliverability_schedule(
    client: Client, settings: Settings, schedule_id: str = DELIVERABILITY_SCHEDULE_ID
) -> None:
    """Every live connection's SPF, DKIM and DMARC checked again, every day
    (`deliverability-check`)."""
    await _ensure_daily(
        client, schedule_id, DeliverabilityCheckWorkflow.run, DeliverabilityPage(),
        "deliverability-check", settings.task_queue,
    )  # fmt: skip


async def start_inbound_check(
    client: Client, settings: Settings, connection_id: str, company_id: str
) -> None:
    """Check a live connection's redirect again now (`inbound-check-{id}`); a check already
    under way is the answer."""
    await start_run(
        client,
        InboundCheckWorkflow.run,
        RecheckInput(connection_id, company_id, settings.redirect_check_wait),
        workflow_id=inbound_check_workflow_id(connection_id),
        task_queue=settings.task_queue,
        company_id=company_id,
        status="checking",
        connection_id=connection_id,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )


async def start_mailbox_sync(
    client: Client, settings: Settings, connection_id: str, company_id: str, provider: str
) -> None:
    """Start `mailbox-sync-{id}` for a connection with the mailbox_sync path; one already
    running is woken instead (it reads the connection's paths and grant again)."""
    started = await start_run(
        client,
        MailboxSyncWorkflow.run,
        SyncInput(
            connection_id,
            company_id,
            poll_interval=settings.sync_poll_interval,
            stale_after=settings.sync_stale_after,
            resync_days=settings.sync_resync_days,
            closed_application_grace=settings.closed_application_grace,
        ),
        workflow_id=mailbox_sync_workflow_id(connection_id),
        task_queue=settings.task_queue,
        company_id=company_id,
        status="syncing",
        connection_id=connection_id,
        provider=provider,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    if started:
        await nudge_mailbox_sync(client, connection_id, "grant")


async def nudge_mailbox_sync(client: Client, connection_id: str, reason: str = "change") -> bool:
    """Wake a connection's sync run (False when it is not running). Carries no mail."""
    try:
        handle = client.get_workflow_handle(mailbox_sync_workflow_id(connection_id))
        await handle.signal(NOTIFY, Nudge(reason))
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


async def stop_mailbox_sync(client: Client, connection_id: str) -> None:
    try:
        await client.get_workflow_handle(mailbox_sync_workflow_id(connection_id)).signal(STOP)
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise


class Erasing(Protocol):
    """An erasure row as the API and the sweeper hold it."""

    @property
    def id(self) -> uuid.UUID: ...

    @property
    def candidate_id(self) -> uuid.UUID: ...

    @property
    def company_id(self) -> uuid.UUID: ...


async def start_bulk(client: Client, settings: Settings, job: Queued) -> bool:
    """Start bulk-send-{job id}; False when a run with that id is already under way (the
    API's own start, or another worker's sweep)."""
    return await start_run(
        client,
        BulkSendWorkflow.run,
        BulkSendInput(
            job_id=str(job.id),
            company_id=str(job.company_id),
            batch_size=settings.bulk_batch_size,
            batches_per_run=settings.bulk_batches_per_run,
            parallel_batches=settings.bulk_parallel_batches,
            heartbeat_timeout=settings.bulk_heartbeat_timeout,
            send_at=getattr(job, "send_at", None),
        ),
        workflow_id=job.run_id,
        task_queue=settings.task_queue,
        company_id=str(job.company_id),
        status=BulkJobStatus.SCHEDULED
        if getattr(job, "send_at", None) is not None
        else BulkJobStatus.QUEUED,
    )


async def start_erasure(client: Client, settings: Settings, erasure: Erasing) -> None:
    """Start erase-candidate-{candidate id}: a running one is taken as it is, and one that
    ended without finishing (terminated by an operator) is started again; its steps resume
    where the last one left."""
    await start_run(
        client,
        EraseCandidateWorkflow.run,
        EraseInput(str(erasure.id), str(erasure.candidate_id), str(erasure.company_id)),
        workflow_id=erase_workflow_id(str(erasure.candidate_id)),
        task_queue=settings.task_queue,
        company_id=str(erasure.company_id),
        status="erasing",
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
    )


def webhook_queue(settings: Settings) -> str:
    """Webhook runs and their activities have a task queue of their own: a slow endpoint never
    takes a slot that a send or a routing needs."""
    return f"{settings.task_queue}-webhooks"


async def wake_endpoint(
    client: Client, settings: Settings, endpoint_id: uuid.UUID, company_id: uuid.UUID
) -> None:
    """Tell an endpoint's run that events may be due, starting it when it is not running."""
    await signal_start(
        client,
        WebhookEndpointWorkflow.run,
        WebhookEndpointInput(str(endpoint_id), str(company_id)),
        workflow_id=webhook_workflow_id(str(endpoint_id)),
        signal=EVENTS,
        signal_args=[],
        settings=settings,
        company_id=str(company_id),
        task_queue=webhook_queue(settings),
    )


class Queued(Protocol):
    """A message or bulk job row as the API and the sweeper hold it."""

    @property
    def id(self) -> uuid.UUID: ...

    @property
    def company_id(self) -> uuid.UUID: ...

    @property
    def run_id(self) -> str: ...


async def start_send(client: Client, settings: Settings, message: Queued) -> bool:
    """Start send-message-{id}, for the API that queued the message and for the sweeper that
    finds it queued without a run. A second start never sends it again: while the run is open
    it is the same run; after it closed, the start is refused (False)."""
    company_id = str(message.company_id)
    return await start_run(
        client,
        SendMessageWorkflow.run,
        SendMessageInput(
            message_id=str(message.id),
            company_id=company_id,
            retry_initial_interval=settings.send_retry_initial_interval,
            retry_max_interval=settings.send_retry_max_interval,
            retry_total=settings.send_retry_total,
            send_at=getattr(message, "send_at", None),
        ),
        workflow_id=message.run_id,
        task_queue=settings.task_queue,
        company_id=company_id,
        status=MessageStatus.SCHEDULED
        if getattr(message, "send_at", None) is not None
        else MessageStatus.QUEUED,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
    )


async def start_routing(
    client: Client,
    *,
    inbound_id: str,
    company_id: str,
    task_queue: str,
    closed_application_grace: timedelta,
) -> None:
    """Start receive-message-{id} for mail already stored. A second start is a no-op."""
    await start_run(
        client,
        InboundMessageWorkflow.run,
        InboundMessageInput(
            inbound_id=inbound_id,
            company_id=company_id,
            closed_application_grace=closed_application_grace,
        ),
        workflow_id=receive_workflow_id(inbound_id),
        task_queue=task_queue,
        company_id=company_id,
        status=InboundState.STORED,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        # Routing is idempotent, so a run that failed (database down too long) may rerun.
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
    )


class Stored(Protocol):
    """Stored inbound mail waiting for its routing run (core.inbound.intake.StoredInbound)."""

    @property
    def inbound_id(self) -> uuid.UUID: ...

    @property
    def company_id(self) -> uuid.UUID: ...


async def start_all_routing(
    client: Client,
    items: Iterable[Stored],
    *,
    task_queue: str,
    closed_application_grace: timedelta,
    together: bool = False,
) -> None:
    """Start routing for stored mail, each message in a receive-message run of its own (a
    second start of the same message is a no-op: two sweepers never route it twice); or,
    `together`, one receive-messages run for several of one company (the receiver's bursts).
    A failed start is logged and left to the sweeper."""
    groups: list[tuple[uuid.UUID, list[str]]] = []
    if together:
        by_company: dict[uuid.UUID, list[str]] = {}
        for item in items:
            by_company.setdefault(item.company_id, []).append(str(item.inbound_id))
        groups = list(by_company.items())
    else:
        groups = [(item.company_id, [str(item.inbound_id)]) for item in items]
    for company_id, inbound_ids in groups:
        try:
            if len(inbound_ids) == 1:
                await start_routing(
                    client,
                    inbound_id=inbound_ids[0],
                    company_id=str(company_id),
                    task_queue=task_queue,
                    closed_application_grace=closed_application_grace,
                )
                continue
            await start_run(
                client,
                InboundMessagesWorkflow.run,
                InboundMessagesInput(inbound_ids, str(company_id), closed_application_grace),
                workflow_id=receive_batch_workflow_id(inbound_ids[0]),
                task_queue=task_queue,
                company_id=str(company_id),
                status=InboundState.STORED,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            )
        except Exception:
            log.warning(
                "routing for inbound %s not started; the sweeper will retry",
                ", ".join(inbound_ids[:5]),
                exc_info=True,
            )
