"""Bulk sends: one email to many candidates, personalised, each recipient with its own Message."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from fastapi import APIRouter, HTTPException, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel
from sqlalchemy import delete, func, insert
from sqlmodel import Session, col, select

from api.deps import Recruiter, SessionDep, SettingsDep, TemporalDep
from api.routers.common import get_owned, start_or_undo
from api.schemas import Body, Html, Request, Subject
from core.db import get_or_fail, session_scope
from core.mail import new_message_id
from core.models import (
    BulkJob,
    Candidate,
    Company,
    Direction,
    Message,
    SenderNameMode,
    User,
    table_of,
    utcnow,
)
from core.run_ids import bulk_workflow_id
from core.settings import Settings
from core.statuses import BulkJobStatus, MessageKind, MessageStatus
from core.templates import check_template, render, values_for
from workflows.bulk_send import BulkSendInput, BulkSendWorkflow
from workflows.client import start_run

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/bulk-messages", tags=["bulk messages"])

_COUNTED = ("queued", "sending", "sent", "failed", "cancelled")


class BulkCreate(Request):
    candidate_ids: list[uuid.UUID]
    subject: Subject
    text: Body
    html: Html | None = None


class BulkCounts(BaseModel):
    queued: int = 0
    sending: int = 0
    sent: int = 0
    failed: int = 0
    cancelled: int = 0


class BulkJobPublic(BaseModel):
    id: uuid.UUID
    status: str
    total: int
    counts: BulkCounts
    progress: float  # share of recipients with a final status, 0 to 1
    next_send_at: datetime | None  # while a mailbox throttle holds the job back
    subject: str
    workflow_id: str | None
    created_at: datetime
    finished_at: datetime | None


def _public(session: Session, job: BulkJob) -> BulkJobPublic:
    rows = session.exec(
        select(Message.status, func.count())
        .where(Message.bulk_job_id == job.id)
        .group_by(Message.status)
    ).all()
    counts = BulkCounts(**{s: n for s, n in rows if s in _COUNTED})
    done = counts.sent + counts.failed + counts.cancelled
    return BulkJobPublic(
        id=job.id,
        status=job.status,
        total=job.total,
        counts=counts,
        progress=round(done / job.total, 4) if job.total else 1.0,
        next_send_at=job.next_send_at,
        subject=job.subject,
        workflow_id=job.workflow_id,
        created_at=job.created_at,
        finished_at=job.finished_at,
    )


def _unprocessable(message: str) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, message)


def _create(session: Session, settings: Settings, user: User, body: BulkCreate) -> BulkJob:
    ids = list(dict.fromkeys(body.candidate_ids))  # a candidate listed twice gets one email
    if not ids:
        raise _unprocessable("candidate_ids: give at least one candidate")
    if len(ids) > settings.bulk_max_recipients:
        raise _unprocessable(
            f"candidate_ids: at most {settings.bulk_max_recipients} recipients per bulk send "
            f"(got {len(ids)}); split the list"
        )
    try:
        check_template("subject", body.subject)
        check_template("text", body.text)
        if body.html is not None:
            check_template("html", body.html)
    except ValueError as exc:
        raise _unprocessable(str(exc)) from None
    found: dict[uuid.UUID, Candidate] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        for candidate in session.exec(
            select(Candidate).where(
                Candidate.company_id == user.company_id, col(Candidate.id).in_(chunk)
            )
        ):
            found[candidate.id] = candidate
    missing = [str(i) for i in ids if i not in found]
    if missing:
        shown = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        raise _unprocessable(f"candidate_ids: no such candidate in your company: {shown}")

    company = get_or_fail(session, Company, user.company_id)
    sender_name = user.name if company.sender_name_mode == SenderNameMode.EMPLOYEE else company.name
    job_id = uuid.uuid4()
    job = BulkJob(
        id=job_id,
        company_id=company.id,
        created_by_user_id=user.id,
        subject=body.subject,
        text=body.text,
        html=body.html,
        total=len(ids),
        workflow_id=bulk_workflow_id(str(job_id)),
    )
    session.add(job)
    session.flush()
    # One executemany of plain rows: thousands of model objects would cost seconds here.
    now = utcnow()
    rows = []
    for candidate_id in ids:
        candidate = found[candidate_id]
        values = values_for(candidate.name, company.name, sender_name)
        rows.append(
            {
                "id": uuid.uuid4(),
                "company_id": company.id,
                "candidate_id": candidate.id,
                "direction": Direction.OUTBOUND.value,
                "status": MessageStatus.QUEUED.value,
                "kind": MessageKind.MAIL.value,
                "from_address": "",
                "from_name": "",
                "to_addresses": [candidate.email],
                "subject": render(body.subject, values, mode="header"),
                "text": render(body.text, values),
                "html": render(body.html, values, mode="html") if body.html is not None else None,
                "message_id_header": new_message_id(settings.platform_mail_domain),
                "sender_user_id": user.id,
                "workflow_id": job.workflow_id,
                "bulk_job_id": job.id,
                "attempts": 0,
                "created_at": now,
                "updated_at": now,
            }
        )
    session.execute(insert(table_of(Message)), rows)
    session.commit()
    return job


def _delete(engine, job_id: uuid.UUID) -> None:
    with session_scope(engine) as session:
        session.execute(delete(Message).where(col(Message.bulk_job_id) == job_id))
        session.execute(delete(BulkJob).where(col(BulkJob.id) == job_id))


@router.post("", response_model=BulkJobPublic, status_code=status.HTTP_202_ACCEPTED)
async def create_bulk_send(
    body: BulkCreate,
    user: Recruiter,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
) -> BulkJobPublic:
    """Queue one personalised email per candidate. Placeholders: {{candidate.name}},
    {{candidate.first_name}}, {{company.name}}, {{sender.name}}."""
    job = await run_in_threadpool(_create, session, settings, user, body)
    await start_or_undo(
        start_run(
            temporal,
            BulkSendWorkflow.run,
            BulkSendInput(
                job_id=str(job.id),
                company_id=str(job.company_id),
                batch_size=settings.bulk_batch_size,
                batches_per_run=settings.bulk_batches_per_run,
                parallel_batches=settings.bulk_parallel_batches,
                heartbeat_timeout=settings.bulk_heartbeat_timeout,
            ),
            workflow_id=job.run_id,
            task_queue=settings.task_queue,
            company_id=str(job.company_id),
            status=BulkJobStatus.QUEUED,
        ),
        lambda: _delete(session.bind, job.id),
        "The bulk send was not queued",
        job.run_id,
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
        await temporal.get_workflow_handle(job.run_id).execute_update("cancel")
    except Exception:
        # The flag in the database stops the batches too; the update only saves a wait.
        log.warning("cancel update for %s not delivered", job.workflow_id, exc_info=True)
    session.refresh(job)
    return await run_in_threadpool(_public, session, job)
