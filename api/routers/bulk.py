"""Bulk sends: one email to many candidates, personalised, each recipient with its own Message."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response, status
from fastapi.concurrency import run_in_threadpool

from api.deps import (
    EngineDep,
    Recruiter,
    SessionDep,
    SettingsDep,
    TemporalDep,
    temporal_client,
)
from api.routers.common import insert_then_start
from api.runs import start_bulk
from api.schemas import BulkCreate, BulkDryRun, BulkJobPublic
from api.services import bulk as service
from core.models import (
    BulkJob,
)
from workflows.bulk import BulkSendWorkflow

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/bulk-messages", tags=["bulk messages"])


@router.post(
    "",
    response_model=BulkJobPublic | BulkDryRun,
    status_code=status.HTTP_202_ACCEPTED,
    responses={200: {"model": BulkDryRun, "description": "dry_run=true: what would happen"}},
)
async def create_bulk_send(
    body: BulkCreate,
    user: Recruiter,
    session: SessionDep,
    settings: SettingsDep,
    engine: EngineDep,
    request: Request,
    response: Response,
    dry_run: bool = False,
) -> BulkJobPublic | BulkDryRun:
    """Queue one personalised email per candidate: from a stored template (`template_id`,
    the variant for each candidate's language) or from `subject` and `text` written with the
    same merge fields ({{ candidate.first_name | default("there") }}, docs/templates.md).
    A field without a fallback that is empty for any recipient refuses the whole send (422,
    listing them); `?dry_run=true` shows that list and sends nothing."""
    if dry_run:
        planned = await run_in_threadpool(service.plan, session, settings, user, body)
        response.status_code = status.HTTP_200_OK
        return BulkDryRun(
            total=len(planned.ids),
            would_send=len(planned.ids) - len(planned.would_fail),
            would_fail=planned.would_fail,
        )

    async def start(created: BulkJob) -> bool:
        # The workflow service is reached only for a send that passed every check.
        return await start_bulk(await temporal_client(request), settings, created)

    job = await insert_then_start(
        lambda: service.create_job(session, settings, user, body),
        start,
        lambda created: service.delete_job(engine, created.id),
        "The bulk send was not queued",
    )
    return await run_in_threadpool(service.public, session, job)


@router.get("/{job_id}", response_model=BulkJobPublic)
def read_bulk_send(job_id: str, user: Recruiter, session: SessionDep) -> BulkJobPublic:
    return service.read(session, user, job_id)


@router.post("/{job_id}/cancel", response_model=BulkJobPublic)
async def cancel_bulk_send(
    job_id: str, user: Recruiter, session: SessionDep, temporal: TemporalDep
) -> BulkJobPublic:
    """Stop what has not been sent yet. Messages already sent stay sent; the rest become
    `cancelled`. The running batch stops within about a second."""
    job = await run_in_threadpool(service.request_cancel, session, user, job_id)
    try:
        handle = temporal.get_workflow_handle(job.run_id)
        _ = await handle.execute_update(BulkSendWorkflow.cancel)  # its progress: not needed
    except Exception:
        # The flag in the database stops the batches too; the update only saves a wait.
        log.warning("cancel update for %s not delivered", job.workflow_id, exc_info=True)
    return await run_in_threadpool(service.reread, session, job)
