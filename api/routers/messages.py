"""Reading messages: a candidate's Messages tab, Unassigned, one message and its attachments;
and filing a received one (assign it, or make a candidate of it). Reads are
api/services/messages.py's, filing api/services/inbound.py's; sending is api/routers/send.py."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query, Response, status

from api.deps import Recruiter, SessionDep, SettingsDep
from api.schemas import AssignRequest, CandidateFromMessage, CandidatePublic, MessagePublic
from api.services import inbound, messages
from core.models import Candidate

router = APIRouter(tags=["messages"])


# `?remote_images=1`: remote images in `html_safe` load; by default a placeholder stands in, so
# that opening a message tells no tracker it was read.
RemoteImages = Annotated[
    bool,
    Query(description="Load remote images in html_safe and reply_html_safe (default: a "
          "placeholder stands in for each, so no tracker learns the message was read)."),
]  # fmt: skip


@router.get("/v1/candidates/{candidate_id}/messages", response_model=list[MessagePublic])
def list_candidate_messages(
    candidate_id: str,
    user: Recruiter,
    session: SessionDep,
    settings: SettingsDep,
    remote_images: RemoteImages = False,
) -> list[MessagePublic]:
    return messages.for_candidate(session, settings, user, candidate_id, remote_images)


@router.get("/v1/messages/unassigned", response_model=list[MessagePublic])
def list_unassigned(
    user: Recruiter,
    session: SessionDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before: datetime | None = None,
    remote_images: RemoteImages = False,
) -> list[MessagePublic]:
    """Inbound messages that matched no candidate, newest first; page with `before`."""
    return messages.unassigned(session, settings, user, limit, before, remote_images)


@router.get("/v1/messages/{message_id}", response_model=MessagePublic)
def read_message(
    message_id: str,
    user: Recruiter,
    session: SessionDep,
    settings: SettingsDep,
    remote_images: RemoteImages = False,
) -> MessagePublic:
    return messages.read(session, settings, user, message_id, remote_images)


@router.post("/v1/messages/{message_id}/assign", response_model=MessagePublic)
def assign_message(
    message_id: str,
    body: AssignRequest,
    user: Recruiter,
    session: SessionDep,
    settings: SettingsDep,
) -> MessagePublic:
    """Move an inbound message to a candidate. With `remember_address`, the sender's address
    becomes one of the candidate's, so that sender's next mail routes by itself."""
    message = inbound.assign(
        session, user, message_id, body.candidate_id, remember=body.remember_address
    )
    return messages.to_public(session, message, settings.public_url)


@router.post(
    "/v1/messages/{message_id}/candidate",
    response_model=CandidatePublic,
    status_code=status.HTTP_201_CREATED,
)
def candidate_from_message(
    message_id: str, user: Recruiter, session: SessionDep, body: CandidateFromMessage | None = None
) -> Candidate:
    """An application that arrived by email becomes a candidate: by default named and
    addressed as the message's sender. The message (with its attachments) moves to the new
    candidate, and the sender's address is remembered, so their next mail routes by itself."""
    return inbound.candidate_from_message(session, user, message_id, body or CandidateFromMessage())


@router.get("/v1/messages/{message_id}/attachments/{attachment_id}")
def download_attachment(
    message_id: str,
    attachment_id: str,
    user: Recruiter,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    file = messages.attachment_file(session, settings, user, message_id, attachment_id)
    # Always a download, never rendered inline: a received HTML file must not run in our origin.
    return Response(
        content=file.content,
        media_type=file.content_type,
        headers={
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(file.filename)}",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox",
            "Digest": f"sha-256={file.sha256}",
        },
    )
