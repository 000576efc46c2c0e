"""Candidates as the API keeps them: create, list, read and change one, scoped to the caller's
company. An erased (or erasing) candidate is refused any change (api/services/privacy.py)."""

from __future__ import annotations

from sqlmodel import Session, col, select

from api.schemas import CandidateCreate, CandidateUpdate
from api.services.common import check_entity, get_owned
from api.services.privacy import refuse_if_erased
from core.errors import Refused
from core.models import ApplicationStatus, Candidate, User, utcnow


def create(session: Session, user: User, body: CandidateCreate) -> Candidate:
    check_entity(session, user.company_id, body.legal_entity_id)
    candidate = Candidate(
        company_id=user.company_id,
        legal_entity_id=body.legal_entity_id,
        name=body.name.strip(),
        email=body.email,
        application_status=body.application_status,
        closed_at=utcnow() if body.application_status == ApplicationStatus.CLOSED else None,
        language=body.language,
        timezone=body.timezone,
    )
    session.add(candidate)
    session.commit()
    return candidate


def newest(session: Session, user: User, limit: int) -> list[Candidate]:
    return list(
        session.exec(
            select(Candidate)
            .where(Candidate.company_id == user.company_id)
            .order_by(col(Candidate.created_at).desc())
            .limit(max(1, min(limit, 500)))
        ).all()
    )


def read(session: Session, user: User, candidate_id: str) -> Candidate:
    return get_owned(session, Candidate, candidate_id, user.company_id, "candidate")


def update(session: Session, user: User, candidate_id: str, body: CandidateUpdate) -> Candidate:
    candidate = get_owned(session, Candidate, candidate_id, user.company_id, "candidate")
    refuse_if_erased(candidate)
    changes = body.model_dump(exclude_unset=True)
    if "legal_entity_id" in changes:
        check_entity(session, user.company_id, changes["legal_entity_id"])
    for field in ("name", "email", "legal_entity_id", "language", "timezone"):
        if field in changes:
            if changes[field] is None and field in ("name", "email"):
                raise Refused(f"{field}: must not be null")
            setattr(candidate, field, changes[field])
    new_status = changes.get("application_status")
    if new_status and new_status != candidate.application_status:
        candidate.application_status = new_status
        candidate.closed_at = utcnow() if new_status == ApplicationStatus.CLOSED else None
    candidate.updated_at = utcnow()
    session.add(candidate)
    session.commit()
    return candidate
