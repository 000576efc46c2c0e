"""The retention rules, applied: which closed applications are due for erasure (or for the
question first), the Unassigned messages past their keeping period, and a candidate's answer
to the question. activities/privacy.py runs each in its own transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import delete, or_
from sqlmodel import Session, col, select

from core import attachments as files_at_rest
from core import audit
from core.db import get_or_fail
from core.events import EventType
from core.models import (
    ApplicationStatus,
    Attachment,
    Candidate,
    CompanyPrivacy,
    Direction,
    Erasure,
    Event,
    InboundRaw,
    Message,
    utcnow,
)
from core.privacy import consent_deadline, register_erasure


@dataclass
class Due:
    """Erasures registered now, candidates to ask first (with how long they have), and
    whether more are due than one batch held."""

    erase: list[Erasure] = field(default_factory=list)
    ask: list[tuple[Candidate, timedelta]] = field(default_factory=list)
    more: bool = False


def find_due(session: Session, batch_size: int) -> Due:
    """Closed applications past each company's `erase_after_days_closed` (or past the
    extension a candidate agreed to). With `consent_extension_days`, those within that many
    days of their date are asked first (once); their run erases them at the deadline."""
    now = utcnow()
    due = Due()
    rules = session.exec(
        select(CompanyPrivacy).where(col(CompanyPrivacy.erase_after_days_closed).is_not(None))
    ).all()
    for rule in rules:
        keep = timedelta(days=rule.erase_after_days_closed or 0)
        ask_before = timedelta(days=rule.consent_extension_days or 0)
        horizon = now - keep + ask_before  # closed before this: due, or due to be asked
        query = select(Candidate).where(
            Candidate.company_id == rule.company_id,
            Candidate.application_status == ApplicationStatus.CLOSED,
            col(Candidate.closed_at) < horizon,
            col(Candidate.erased_at).is_(None),
            col(Candidate.erasure_requested_at).is_(None),
            or_(
                col(Candidate.retain_until).is_(None),
                col(Candidate.retain_until) < now + ask_before,
            ),
        )
        if rule.consent_extension_days:  # asked already: that question's run erases
            query = query.where(col(Candidate.consent_asked_at).is_(None))
        candidates = session.exec(query.limit(batch_size - len(due.erase) - len(due.ask))).all()
        for candidate in candidates:
            due_at = (candidate.closed_at or now) + keep
            if candidate.retain_until is not None:
                due_at = max(due_at, candidate.retain_until)
            if not rule.consent_extension_days:
                if due_at <= now:
                    due.erase.append(register_erasure(session, candidate, reason="retention"))
                continue
            if candidate.consent_asked_at is None:
                candidate.consent_asked_at = now
                session.add(candidate)
                deadline = consent_deadline(candidate, rule)
                due.ask.append((candidate, deadline - now))
        if len(due.erase) + len(due.ask) >= batch_size:
            due.more = True
            break
    return due


def delete_old_unassigned(session: Session, batch: int) -> tuple[int, bool]:
    """Unassigned messages older than each company's `unassigned_retention_days` (180 by
    default), with their attachments and raw bytes; how many, and whether more are due."""
    now = utcnow()
    limits = {
        p.company_id: p.unassigned_retention_days
        for p in session.exec(select(CompanyPrivacy)).all()
    }
    default = CompanyPrivacy.model_fields["unassigned_retention_days"].default
    oldest = now - timedelta(days=min([default, *limits.values()]))
    rows = session.exec(
        select(Message.id, Message.company_id, Message.created_at)
        .where(
            col(Message.candidate_id).is_(None),
            Message.direction == Direction.INBOUND,
            col(Message.created_at) < oldest,
        )
        .limit(batch)
    ).all()
    ids = [
        i for i, company, created in rows
        if created < now - timedelta(days=limits.get(company, default))
    ]  # fmt: skip
    if ids:
        files_at_rest.delete_attachments(session, col(Attachment.message_id).in_(ids))
        # Events are kept a month (RECRUITMAIL_EVENT_RETENTION): few are this old.
        newest = max(created for i, _, created in rows if i in ids)
        for event in session.exec(
            select(Event).where(
                Event.type == EventType.MESSAGE_RECEIVED,
                col(Event.candidate_id).is_(None),
                col(Event.personal).is_not(None),
                col(Event.created_at) <= newest + timedelta(days=1),
            )
        ):
            if event.data.get("message_id") in {str(i) for i in ids}:
                event.personal = None
                session.add(event)
        session.execute(delete(Message).where(col(Message.id).in_(ids)))
        # After the messages, which point at their raw bytes.
        session.execute(delete(InboundRaw).where(col(InboundRaw.message_id).in_(ids)))
    return len(ids), len(rows) == batch


def record_answer(session: Session, candidate_id: str, answer: str) -> Erasure | None:
    """The candidate's answer (`keep`, `delete`, or `none` when the deadline came first),
    audited; the erasure it registers, if any (`keep` moves the date on instead)."""
    candidate = get_or_fail(session, Candidate, candidate_id)
    now = utcnow()
    audit.record(
        session,
        company_id=candidate.company_id,
        user_id=None,
        action="candidate.retention_answer",
        target=f"candidate:{candidate.id}",
        answer=answer,
    )
    if answer == "keep":
        privacy = session.get(CompanyPrivacy, candidate.company_id)
        period = timedelta(days=(privacy.erase_after_days_closed if privacy else 0) or 0)
        candidate.retain_until = now + period
        candidate.consent_asked_at = None  # asked again before the new date
        session.add(candidate)
        return None
    if candidate.erased_at is not None:
        return None
    privacy = session.get(CompanyPrivacy, candidate.company_id)
    rule_off = privacy is None or privacy.erase_after_days_closed is None
    reopened = candidate.application_status != ApplicationStatus.CLOSED
    if answer == "none" and (rule_off or reopened):
        # No answer, but the rule no longer erases them: nothing to do until it does.
        candidate.consent_asked_at = None
        session.add(candidate)
        return None
    return register_erasure(
        session, candidate, reason="consent" if answer == "delete" else "retention"
    )
