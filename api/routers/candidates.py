from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from sqlmodel import col, select

from api.deps import CurrentUser, Recruiter, SessionDep
from api.routers.common import check_entity, get_owned
from api.schemas import CandidateCreate, CandidatePublic, CandidateUpdate
from api.services.privacy import refuse_if_erased
from core.models import ApplicationStatus, Candidate, utcnow

router = APIRouter(prefix="/v1/candidates", tags=["candidates"])


@router.post("", response_model=CandidatePublic, status_code=status.HTTP_201_CREATED)
def create_candidate(body: CandidateCreate, user: Recruiter, session: SessionDep) -> Candidate:
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


@router.get("", response_model=list[CandidatePublic])
def list_candidates(user: CurrentUser, session: SessionDep, limit: int = 100) -> list[Candidate]:
    limit = max(1, min(limit, 500))
    return list(
        session.exec(
            select(Candidate)
            .where(Candidate.company_id == user.company_id)
            .order_by(col(Candidate.created_at).desc())
            .limit(limit)
        ).all()
    )


@router.get("/{candidate_id}", response_model=CandidatePublic)
def read_candidate(candidate_id: str, user: CurrentUser, session: SessionDep) -> Candidate:
    return get_owned(session, Candidate, candidate_id, user.company_id, "candidate")


@router.patch("/{candidate_id}", response_model=CandidatePublic)
def update_candidate(
    candidate_id: str, body: CandidateUpdate, user: Recruiter, session: SessionDep
) -> Candidate:
    candidate = get_owned(session, Candidate, candidate_id, user.company_id, "candidate")
    refuse_if_erased(candidate)
    changes = body.model_dump(exclude_unset=True)
    if "legal_entity_id" in changes:
        check_entity(session, user.company_id, changes["legal_entity_id"])
    for field in ("name", "email", "legal_entity_id", "language", "timezone"):
        if field in changes:
            if changes[field] is None and field in ("name", "email"):
                raise HTTPException(422, f"{field}: must not be null")
            setattr(candidate, field, changes[field])
    new_status = changes.get("application_status")
    if new_status and new_status != candidate.application_status:
        candidate.application_status = new_status
        candidate.closed_at = utcnow() if new_status == ApplicationStatus.CLOSED else None
    candidate.updated_at = utcnow()
    session.add(candidate)
    session.commit()
    return candidate
