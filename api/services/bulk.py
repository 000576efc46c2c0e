"""Bulk sends as the API creates them: the job and one message per recipient in one commit,
then the bulk-send run. The routes in api/routers/bulk.py stay thin."""

from __future__ import annotations

import uuid

from fastapi import HTTPException, status
from sqlalchemy import Engine, delete, insert
from sqlmodel import Session, col, select

from api.schemas import BulkCreate
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
from core.statuses import MessageKind, MessageStatus
from core.templates import check_template, render, values_for


def _unprocessable(message: str) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, message)


def create_job(session: Session, settings: Settings, user: User, body: BulkCreate) -> BulkJob:
    """The job and one queued message per distinct candidate, committed; 422 writes nothing."""
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
        raise _unprocessable(f"candidate_ids: no such candidate in your company: {_few(missing)}")
    erased = [str(i) for i in ids if found[i].erasure_requested_at is not None]
    if erased:
        raise _unprocessable(
            f"candidate_ids: these candidates' data is erased (or being erased), nothing more "
            f"is sent to them: {_few(erased)}"
        )

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
        unsubscribe=body.unsubscribe,
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


def delete_job(engine: Engine, job_id: uuid.UUID) -> None:
    """Undo create_job() when the job's run could not start."""
    with session_scope(engine) as session:
        session.execute(delete(Message).where(col(Message.bulk_job_id) == job_id))
        session.execute(delete(BulkJob).where(col(BulkJob.id) == job_id))


def _few(ids: list[str]) -> str:
    return ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
