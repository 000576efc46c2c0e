"""A candidate's data on request: erase it (POST /v1/candidates/{id}/erase, then
GET /v1/erasures/{id} for its progress) and hand it over (GET /v1/candidates/{id}/export)."""

from __future__ import annotations

from fastapi import APIRouter, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from api.deps import EngineDep, Recruiter, SessionDep, SettingsDep, TemporalDep
from api.routers.common import insert_then_start
from api.runs import start_erasure
from api.schemas import ErasurePublic
from api.services import privacy as service
from api.services.common import get_owned
from core.models import Candidate, Erasure
from core.security import secret_box

router = APIRouter(tags=["privacy"])


@router.post(
    "/v1/candidates/{candidate_id}/erase",
    response_model=ErasurePublic,
    status_code=status.HTTP_202_ACCEPTED,
)
async def erase_candidate(
    candidate_id: str,
    user: Recruiter,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
    engine: EngineDep,
) -> Erasure:
    """Erase the candidate's mail everywhere (docs/privacy.md): what has not gone out is
    cancelled, every message's content, headers, attachments and raw bytes are deleted, the
    candidate becomes "Erased candidate" without an address. Ids, counts and statuses stay.
    Asking again while it runs answers the same erasure; asking after it was done runs it again,
    erasing whatever came since."""
    candidate = await run_in_threadpool(
        get_owned, session, Candidate, candidate_id, user.company_id, "candidate"
    )
    erasure, _ = await insert_then_start(
        lambda: service.request_erasure(session, user, candidate),
        lambda found: _start_unless_done(temporal, settings, found[0]),
        lambda found: service.undo_erasure(engine, found[0].id) if found[1] else None,
        "The erasure was not started",
    )
    return erasure


async def _start_unless_done(temporal: TemporalDep, settings: SettingsDep, erasure: Erasure):
    if erasure.status != "done":
        await start_erasure(temporal, settings, erasure)


@router.get("/v1/erasures/{erasure_id}", response_model=ErasurePublic)
def read_erasure(erasure_id: str, user: Recruiter, session: SessionDep) -> Erasure:
    return get_owned(session, Erasure, erasure_id, user.company_id, "erasure")


@router.get(
    "/v1/candidates/{candidate_id}/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/zip": {}}}},
)
def export_candidate(
    candidate_id: str,
    user: Recruiter,
    session: SessionDep,
    engine: EngineDep,
    settings: SettingsDep,
) -> StreamingResponse:
    """A zip of everything the candidate's mail holds, streamed: each message as an .eml file
    (the received bytes as they arrived; the sent MIME as it went out), each attachment, and
    messages.json (the index, with the candidate's details). Memory stays flat: one message or
    attachment at a time, each at most the receiver's message limit."""
    candidate = get_owned(session, Candidate, candidate_id, user.company_id, "candidate")
    service.refuse_if_erased(candidate)
    return StreamingResponse(
        service.export_zip(engine, secret_box(settings), user.company_id, user.id, candidate.id),
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="candidate-{candidate.id}.zip"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )
