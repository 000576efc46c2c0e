"""Bulk sends' rules: planning (each recipient's sender and MIME composed once, the messages
numbered into batches by sender, the suppressed skipped), and when a message put off by its
recipient's server is tried again, and when it stops being tried. The statuses themselves
move in core/send/lifecycle.py."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select as core_select
from sqlalchemy import update
from sqlmodel import Session, col

from core.db import get_or_fail
from core.deliverability import suppression, unsubscribe
from core.inbound import tokens
from core.mail import bulk_boundary, compose_bytes
from core.models import BulkJob, Candidate, Company, Message, SenderNameMode, User
from core.security import SecretBox
from core.send import lifecycle
from core.send.senders import EffectiveSender, effective_sender
from core.settings import Settings
from core.statuses import BulkJobStatus, SuppressionReason


@dataclass(frozen=True)
class Deferral:
    """What becomes of a message its recipient's server put off (a 4xx answer)."""

    retry_at: datetime | None  # None: its retries ran out, it fails
    reason: str


def defer(
    reason: str,
    *,
    attempts: int,
    since: datetime | None,
    now: datetime,
    initial: timedelta,
    maximum: timedelta,
    total: timedelta,
) -> Deferral:
    """The message's next try, on its own exponential backoff (as a single send's), within
    `total` of the first time it was put off; or, past that, the reason it fails."""
    first = since or now
    wait = min(maximum, initial * (2 ** max(attempts - 1, 0)))
    if now + wait - first > total:
        return Deferral(None, lifecycle.gave_up(attempts, now - first, reason))
    at = now + wait
    return Deferral(at, f"{reason} Retrying after {at:%H:%M:%S} UTC.")


def plan(session: Session, settings: Settings, box: SecretBox, job_id: str, batch_size: int) -> int:
    """Resolve each recipient's sender, compose every MIME once, number the batches (by
    sender, `batch_size` messages each); a job planned already keeps its batches. Recipients
    on the suppression list are skipped with the reason, never composed."""
    job = get_or_fail(session, BulkJob, job_id)
    if job.batches:
        return job.batches  # planned by an earlier attempt that committed
    company = get_or_fail(session, Company, job.company_id)
    sender_name = company.name
    # The template's sender name, or the company's.
    mode = job.sender_name_mode or company.sender_name_mode
    if mode == SenderNameMode.EMPLOYEE and job.created_by_user_id:
        creator = session.get(User, job.created_by_user_id)
        sender_name = creator.name if creator else sender_name
    rows = session.execute(
        core_select(
            col(Message.id),
            col(Message.subject),
            col(Message.text),
            col(Message.html),
            col(Message.message_id_header),
            col(Message.created_at),
            col(Candidate.name),
            col(Candidate.email),
            col(Candidate.legal_entity_id),
            col(Candidate.id).label("candidate_id"),
        )
        .join(Candidate, col(Message.candidate_id) == col(Candidate.id))
        .where(col(Message.bulk_job_id) == job.id)
        .order_by(col(Message.created_at), col(Message.id))
    ).all()
    rows = _skip_suppressed(session, job, rows)
    senders: dict[uuid.UUID | None, tuple[EffectiveSender, bool]] = {}
    groups: dict[tuple[str, uuid.UUID | None], list[dict[str, Any]]] = defaultdict(list)
    conversations = tokens.conversations_of(session, company.id, [row.candidate_id for row in rows])
    key = box.signing_keys()[0]
    hosted = settings.hosted_address(company.slug)
    for row in rows:
        entity = row.legal_entity_id
        if entity not in senders:
            found = effective_sender(session, settings, company, entity)
            senders[entity] = found, tokens.carries_token(session, found.connection_id)
        sender, carries = senders[entity]
        reply_to = (
            tokens.reply_address(
                hosted, tokens.token(key, conversations[row.candidate_id], company.id)
            )
            if carries
            else None
        )
        composed = compose_bytes(
            files_boundary=bulk_boundary(job.id) if job.files else None,
            from_address=sender.address,
            from_name=sender_name,
            to_address=row.email,
            # Imported names may hold line breaks; a header must not.
            to_name=" ".join(row.name.split()),
            subject=row.subject,
            text=row.text,
            html=row.html,
            message_id=row.message_id_header,
            date=row.created_at,
            reply_to=reply_to,
            extra_headers=unsubscribe.headers_for(
                box,
                settings.public_url,
                hosted,
                company.id,
                row.candidate_id,
            )
            if job.unsubscribe
            else None,
        )
        groups[(sender.transport, sender.connection_id)].append(
            {
                "id": row.id,
                "raw_mime": composed.mime,
                "from_address": sender.address,
                "from_name": sender_name,
                "to_addresses": composed.envelope_to,
                "transport": sender.transport,
                "connection_id": sender.connection_id,
            }
        )
    updates = []
    batch = 0
    for members in groups.values():
        for start in range(0, len(members), batch_size):
            for values in members[start : start + batch_size]:
                updates.append({**values, "bulk_batch": batch})
            batch += 1
    if updates:
        session.execute(update(Message), updates)  # one executemany, by primary key
    job.batches = batch
    job.status = BulkJobStatus.RUNNING
    session.add(job)
    return batch


def _skip_suppressed(session: Session, job: BulkJob, rows: Sequence[Any]) -> list[Any]:
    """The recipients to plan: a recipient on the suppression list is `skipped` with the
    reason (and a message.skipped event), counted in the job's progress, never sent."""
    found = suppression.listed(session, job.company_id, [row.email for row in rows])
    if not found:
        return list(rows)
    kept, skipped = [], []
    for row in rows:
        listed = found.get(suppression.normalized(row.email))
        # A transactional bulk send (no unsubscribe link) still goes to who opted out.
        opt_out_only = listed is not None and listed.reason == SuppressionReason.UNSUBSCRIBED
        if listed is None or (opt_out_only and not job.unsubscribe):
            kept.append(row)
            continue
        skipped.append((row, suppression.explain(listed)))
    lifecycle.skip(session, job.company_id, job.id, skipped)
    return kept
