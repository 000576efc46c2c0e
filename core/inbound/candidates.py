"""Who received mail is about, within one company: the outbound message it replies to, and
the candidate a sender address belongs to (an open application, or one closed within the
grace period). Routing (activities/inbound.py) and mailbox sync's import rule
(core/inbound_paths/sync.py) ask the same questions here."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import func, or_
from sqlmodel import Session, col, select

from core.models import ApplicationStatus, Candidate, CandidateAddress, Direction, Message

MAX_THREAD_IDS = 200


def our_message(session: Session, company_id: uuid.UUID, ids: list[str]) -> Message | None:
    """The newest message this company sent whose Message-ID is among `ids`."""
    if not ids:
        return None
    return session.exec(
        select(Message)
        .where(
            Message.company_id == company_id,
            Message.direction == Direction.OUTBOUND,
            col(Message.message_id_header).in_(ids[:MAX_THREAD_IDS]),
        )
        .order_by(col(Message.created_at).desc())
    ).first()


def candidate_by_address(
    session: Session,
    company_id: uuid.UUID,
    address: str,
    received_at: datetime,
    grace: timedelta,
) -> Candidate | None:
    """The candidate with this address (or one they wrote from before) whose application is
    open, or closed less than `grace` ago; never an erased one. The most recent open
    application wins, then the most recently closed."""
    address = address.lower()
    remembered = select(CandidateAddress.candidate_id).where(
        CandidateAddress.company_id == company_id, CandidateAddress.email == address
    )
    open_or_recent = or_(
        col(Candidate.application_status) == ApplicationStatus.OPEN,
        col(Candidate.closed_at) >= received_at - grace,
    )
    is_open = col(Candidate.application_status) == ApplicationStatus.OPEN
    return session.exec(
        select(Candidate)
        .where(
            Candidate.company_id == company_id,
            or_(func.lower(Candidate.email) == address, col(Candidate.id).in_(remembered)),
            open_or_recent,
            col(Candidate.erasure_requested_at).is_(None),
        )
        .order_by(
            is_open.desc(),
            col(Candidate.created_at).desc(),
            col(Candidate.closed_at).desc(),
        )
    ).first()
