"""Candidates: create, list, read and change (api/services/candidates.py)."""

from __future__ import annotations

from fastapi import APIRouter, status

from api.deps import CurrentUser, Recruiter, SessionDep
from api.schemas import CandidateCreate, CandidatePublic, CandidateUpdate
from api.services import candidates as service
from core.models import Candidate

router = APIRouter(prefix="/v1/candidates", tags=["candidates"])


@router.post("", response_model=CandidatePublic, status_code=status.HTTP_201_CREATED)
def create_candidate(body: CandidateCreate, user: Recruiter, session: SessionDep) -> Candidate:
    return service.create(session, user, body)


@router.get("", response_model=list[CandidatePublic])
def list_candidates(user: CurrentUser, session: SessionDep, limit: int = 100) -> list[Candidate]:
    return service.newest(session, user, limit)


@router.get("/{candidate_id}", response_model=CandidatePublic)
def read_candidate(candidate_id: str, user: CurrentUser, session: SessionDep) -> Candidate:
    return service.read(session, user, candidate_id)


@router.patch("/{candidate_id}", response_model=CandidatePublic)
def update_candidate(
    candidate_id: str, body: CandidateUpdate, user: Recruiter, session: SessionDep
) -> Candidate:
    return service.update(session, user, candidate_id, body)
