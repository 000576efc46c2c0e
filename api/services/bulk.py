"""Bulk sends as the API creates them: the job and one message per recipient in one commit,
then the bulk-send run. The routes in api/routers/bulk.py stay thin."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, delete, func, insert
from sqlmodel import Session, col, select

from api.schemas import BulkCounts, BulkCreate, BulkJobPublic
from api.services import attachments, templates
from api.services.common import get_owned
from core import attachments as files_at_rest
from core.db import session_scope
from core.errors import Conflict, Refused
from core.mail import new_message_id
from core.models import (
    BulkFile,
    BulkJob,
    Candidate,
    Direction,
    Message,
    User,
    table_of,
    utcnow,
)
from core.run_ids import bulk_workflow_id
from core.security import secret_box
from core.send import schedule
from core.settings import Settings
from core.statuses import BulkJobStatus, MessageKind, MessageStatus
from core.templates import Draft, grammar


def _unprocessable(message: str) -> Refused:
    return Refused(message)


@dataclass
class Plan:
    """Each recipient's words, and the recipients a send would refuse (a field without a
    fallback that is empty for them): a bulk send goes out only when there are none."""

    writer: templates.Writer
    words: dict[uuid.UUID, Draft]
    would_fail: list[dict[str, Any]]
    found: dict[uuid.UUID, Candidate]
    ids: list[uuid.UUID]
    files: list[attachments.File]


def plan(session: Session, settings: Settings, user: User, body: BulkCreate) -> Plan:
    """Checks, then renders every recipient's message; 422 names what is wrong."""
    ids = list(dict.fromkeys(body.candidate_ids))  # a candidate listed twice gets one email
    if not ids:
        raise _unprocessable("candidate_ids: give at least one candidate")
    if len(ids) > settings.bulk_max_recipients:
        raise _unprocessable(
            f"candidate_ids: at most {settings.bulk_max_recipients} recipients per bulk send "
            f"(got {len(ids)}); split the list"
        )
    if body.template_id is None:
        for name in ("subject", "text"):
            if getattr(body, name) is None:
                raise _unprocessable(f"{name}: Field required (or give a template_id)")
    try:
        for name in ("subject", "text", "html"):
            if getattr(body, name) is not None:
                grammar.check(name, getattr(body, name))
    except grammar.TemplateError as exc:
        raise _unprocessable(str(exc)) from None
    if body.send_at is not None:
        try:
            schedule.due_at(body.send_at)
        except ValueError as exc:
            raise _unprocessable(str(exc)) from None
    writer = templates.Writer.load(session, user, body.template_id, body.data, body.signature)
    # The files every recipient gets (the template's and the uploads), checked now: 422 names
    # a missing upload or a message over RECRUITMAIL_MAX_MESSAGE_BYTES.
    files = attachments.files_for_send(
        session, settings, user.company_id, writer.template, None, body.attachment_ids
    )
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

    words: dict[uuid.UUID, Draft] = {}
    would_fail: list[dict[str, Any]] = []
    for candidate_id in ids:
        candidate = found[candidate_id]
        try:
            words[candidate_id] = writer.words(
                candidate, subject=body.subject, text=body.text, html=body.html, literal=False
            )
        except grammar.MissingFields as err:
            would_fail.append(
                {"candidate_id": str(candidate_id), "missing": err.fields, "reason": str(err)}
            )
        except templates.OtherEntity as err:
            would_fail.append(
                {"candidate_id": str(candidate_id), "missing": [], "reason": str(err)}
            )
    return Plan(writer, words, would_fail, found, ids, files)


def create_job(session: Session, settings: Settings, user: User, body: BulkCreate) -> BulkJob:
    """The job and one queued message per distinct candidate, committed; 422 writes nothing
    (and lists every recipient whose message would lack a field, when any would)."""
    planned = plan(session, settings, user, body)
    if planned.would_fail:
        raise Refused(
            (
                f"{len(planned.would_fail)} of {len(planned.ids)} recipients would get "
                "a message with an empty field (or a template of another legal entity: each "
                "entry's reason says which), so nothing was sent: fill the fields in, pass "
                'them in "data", or give the template a fallback ({{ field | default("…") }}). '
                "POST …?dry_run=true shows the same list without sending."
            ),
            would_fail=planned.would_fail,
        )
    writer, ids, found = planned.writer, planned.ids, planned.found
    company = writer.company
    template = writer.template
    job_id = uuid.uuid4()
    job = BulkJob(
        id=job_id,
        company_id=company.id,
        created_by_user_id=user.id,
        # The templates as written (a stored template's first variant when it was used).
        subject=body.subject or (template.variants[0]["subject"] if template else ""),
        text=body.text or (template.variants[0]["text"] if template else ""),
        html=body.html,
        total=len(ids),
        unsubscribe=body.unsubscribe,
        workflow_id=bulk_workflow_id(str(job_id)),
        status=BulkJobStatus.SCHEDULED if body.send_at is not None else BulkJobStatus.QUEUED,
        send_at=body.send_at,
        template_id=template.id if template else None,
        sender_name_mode=template.sender if template else None,
        files=[
            {"filename": f.filename, "content_type": f.content_type, "size": f.size}
            for f in planned.files
        ],
    )
    session.add(job)
    session.flush()
    box = secret_box(settings)
    for position, file in enumerate(planned.files):  # once for the job, not per recipient
        fields = files_at_rest.stored_fields(
            box,
            uuid.uuid4(),
            file.filename,
            file.content_type,
            file.sha256,
            attachments.content_of(session, settings, file),
        )
        session.add(BulkFile(job_id=job.id, position=position, **fields))
    # One executemany of plain rows: thousands of model objects would cost seconds here.
    now = utcnow()
    rows = []
    for candidate_id in ids:
        candidate = found[candidate_id]
        words = planned.words[candidate_id]
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
                "subject": words.subject,
                "text": words.text,
                "html": words.html,
                "template_id": template.id if template else None,
                "template_language": words.language,
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
        session.execute(delete(BulkFile).where(col(BulkFile.job_id) == job_id))
        session.execute(delete(BulkJob).where(col(BulkJob.id) == job_id))


def _few(ids: list[str]) -> str:
    return ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")


_COUNTED = ("queued", "sending", "sent", "failed", "cancelled", "skipped")


_WAITING = {
    "quota": "The sending mailbox's 24-hour quota is spent (messages or recipients, counted "
    "over a rolling 24 hours as its provider counts them); the next message goes when the "
    "oldest send of the window ages out.",
    "rate": "The sending mailbox's per-minute rate spaces the messages out.",
}


def public(session: Session, job: BulkJob) -> BulkJobPublic:
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


def read(session: Session, user: User, job_id: str) -> BulkJobPublic:
    return public(session, get_owned(session, BulkJob, job_id, user.company_id, "bulk send"))


def request_cancel(session: Session, user: User, job_id: str) -> BulkJob:
    """Flag the job: its batches stop at the next message (409 once it has ended)."""
    job = get_owned(session, BulkJob, job_id, user.company_id, "bulk send")
    if job.status in (BulkJobStatus.COMPLETED, BulkJobStatus.CANCELLED):
        raise Conflict(f"This bulk send has ended ({job.status}).")
    job.cancel_requested = True
    session.add(job)
    session.commit()
    return job


def reread(session: Session, job: BulkJob) -> BulkJobPublic:
    session.refresh(job)
    return public(session, job)
