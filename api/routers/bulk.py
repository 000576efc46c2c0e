"""Bulk sends: one email to many candidates, personalised, each recipient with its own Message."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel
from sqlalchemy import func
from sqlmodel import Session, select

from api.deps import (
    EngineDep,
    Recruiter,
    SessionDep,
    SettingsDep,
    TemporalDep,
    temporal_client,
)
from api.routers.common import get_owned, insert_then_start
from api.schemas import BulkCreate
from api.services import bulk as service
from core.models import (
    BulkJob,
    Message,
)
from core.statuses import BulkJobStatus
from workflows.bulk_send import BulkSendWorkflow
from workflows.client import start_bulk

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/bulk-messages", tags=["bulk messages"])

_COUNTED = ("queued", "sending", "sent", "failed", "cancelled", "skipped")


_WAITING = {
    "quota": "The sending mailbox's 24-hour quota is spent (messages or recipients, counted "
    "over a rolling 24 hours as its provider counts them); the next message goes when the "
    "oldest send of the window ages out.",
    "rate": "The sending mailbox's per-minute rate spaces the messages out.",
}


class BulkCounts(BaseModel):
    queued: int = 0
    sending: int = 0
    sent: int = 0
    failed: int = 0
    cancelled: int = 0
    skipped: int = 0  # on the suppression list: never sent (each message's error says why)


class BulkJobPublic(BaseModel):
    id: uuid.UUID
    status: str
    total: int
    counts: BulkCounts
    progress: float  # share of recipients with a final status, 0 to 1
    next_send_at: datetime | None  # while a mailbox throttle holds the job back
    # When the mailbox's 24-hour quota (messages or recipients) lets the next message go.
    waiting_for_quota_until: datetime | None = None
    waiting_reason: str | None = None  # why the job waits, in words
    subject: str
    send_at: datetime | None = None  # send later: when the job starts (status `scheduled`)
    template_id: uuid.UUID | None = None
    # The files every recipient gets: name, type and size (stored once until the job ends).
    files: list[dict[str, Any]] = []
    workflow_id: str | None
    created_at: datetime
    finished_at: datetime | None


class BulkDryRun(BaseModel):
    """What the bulk send would do, nothing sent: each recipient whose message would lack a
    field without a fallback (the real send refuses then, and sends nothing)."""

    dry_run: bool = True
    total: int
    would_send: int
    would_fail: list[dict[str, Any]]


def _public(session: Session, job: BulkJob) -> BulkJobPublic:
    rows = session.exec(
        select(Message.status, func.count())
        .where(Message.bulk_job_id == job.id)
        .group_by(Message.status)
    ).all()
    counts = BulkCounts(**{s: n for s, n in rows if s in _COUNTED})
    done = counts.sent + counts.failed + counts.cancelled + counts.skipped
    return BulkJobPublic(
        id=job.id,
        status=job.status,
        total=job.total,
        counts=counts,
        progress=round(done / job.total, 4) if job.total else 1.0,
        next_send_at=job.next_send_at,
        waiting_for_quota_until=job.next_send_at if job.next_send_reason == "quota" else None,
        waiting_reason=_WAITING.get(job.next_send_reason or "") if job.next_send_at else None,
        subject=job.subject,
        send_at=job.send_at,
        template_id=job.template_id,
        files=list(job.files or []),
        workflow_id=job.workflow_id,
        created_at=job.created_at,
        finished_at=job.finished_at,
    )


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
    return await run_in_threadpool(_public, session, job)


@router.get("/{job_id}", response_model=BulkJobPublic)
def read_bulk_send(job_id: str, user: Recruiter, session: SessionDep) -> BulkJobPublic:
    return _public(session, get_owned(session, BulkJob, job_id, user.company_id, "bulk send"))


def _request_cancel(session: Session, job: BulkJob) -> None:
    job.cancel_requested = True
    session.add(job)
    session.commit()


@router.post("/{job_id}/cancel", response_model=BulkJobPublic)
async def cancel_bulk_send(
    job_id: str, user: Recruiter, session: SessionDep, temporal: TemporalDep
) -> BulkJobPublic:
    """Stop what has not been sent yet. Messages already sent stay sent; the rest become
    `cancelled`. The running batch stops within about a second."""
    job = await run_in_threadpool(get_owned, session, BulkJob, job_id, user.company_id, "bulk send")
    if job.status in (BulkJobStatus.COMPLETED, BulkJobStatus.CANCELLED):
        raise HTTPException(status.HTTP_409_CONFLICT, f"This bulk send has ended ({job.status}).")
    await run_in_threadpool(_request_cancel, session, job)
    try:
        handle = temporal.get_workflow_handle(job.run_id)
        _ = await handle.execute_update(BulkSendWorkflow.cancel)  # its progress: not needed
    except Exception:
        # The flag in the database stops the batches too; the update only saves a wait.
        log.warning("cancel update for %s not delivered", job.workflow_id, exc_info=True)
    session.refresh(job)
    return await run_in_threadpool(_public, session, job)
