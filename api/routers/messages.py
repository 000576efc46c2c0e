from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select as core_select
from sqlmodel import Session, col, select
from temporalio.client import Client

from api.deps import (
    EngineDep,
    Recruiter,
    SessionDep,
    SettingsDep,
    TemporalDep,
    parse_id,
    temporal_client,
)
from api.routers.common import get_owned, insert_then_start
from api.schemas import (
    AssignRequest,
    AttachmentPublic,
    CandidateFromMessage,
    CandidatePublic,
    MessagePublic,
    MessageUpdate,
    SendMessageRequest,
)
from api.services import messages as service
from api.services.privacy import refuse_if_erased
from contracts.send import RESCHEDULED
from core import attachments as files_at_rest
from core.models import Attachment, Candidate, Direction, Message
from core.security import secret_box
from workflows.client import start_send

log = logging.getLogger(__name__)
router = APIRouter(tags=["messages"])


# `?remote_images=1`: remote images in `html_safe` load; by default a placeholder stands in, so
# that opening a message tells no tracker it was read.
RemoteImages = Annotated[
    bool,
    Query(description="Load remote images in html_safe and reply_html_safe (default: a "
          "placeholder stands in for each, so no tracker learns the message was read)."),
]  # fmt: skip


def to_public(
    session: Session, message: Message, base_url: str, remote_images: bool = False
) -> MessagePublic:
    return to_public_list(session, [message], base_url, remote_images)[0]


def to_public_list(
    session: Session, messages: list[Message], base_url: str, remote_images: bool = False
) -> list[MessagePublic]:
    """Messages with their attachments' metadata, loaded in one query (never the content),
    and their HTML made safe to show."""
    ids = [m.id for m in messages]
    by_message: dict[uuid.UUID, list[AttachmentPublic]] = {i: [] for i in ids}
    if ids:
        rows = session.execute(
            core_select(
                col(Attachment.id),
                col(Attachment.message_id),
                col(Attachment.filename),
                col(Attachment.content_type),
                col(Attachment.size),
                col(Attachment.original_sender),
                col(Attachment.content_id),
            )
            .where(col(Attachment.message_id).in_(ids))
            .order_by(col(Attachment.filename))
        ).all()
        for attachment_id, message_id, filename, content_type, size, sender, cid in rows:
            by_message[message_id].append(
                AttachmentPublic(
                    id=attachment_id,
                    filename=filename,
                    content_type=content_type,
                    size=size,
                    original_sender=sender,
                    content_id=cid,
                )
            )
    return [
        service.public(message, by_message[message.id], base_url, remote_images)
        for message in messages
    ]


@router.get("/v1/candidates/{candidate_id}/messages", response_model=list[MessagePublic])
def list_candidate_messages(
    candidate_id: str,
    user: Recruiter,
    session: SessionDep,
    settings: SettingsDep,
    remote_images: RemoteImages = False,
) -> list[MessagePublic]:
    candidate = get_owned(session, Candidate, candidate_id, user.company_id, "candidate")
    rows = session.exec(
        select(Message)
        .where(Message.company_id == user.company_id, Message.candidate_id == candidate.id)
        .order_by(col(Message.created_at), col(Message.id))
    ).all()
    return to_public_list(session, list(rows), settings.public_url, remote_images)


@router.post(
    "/v1/candidates/{candidate_id}/messages",
    response_model=MessagePublic,
    status_code=status.HTTP_202_ACCEPTED,
)
async def send_message(
    candidate_id: str,
    body: SendMessageRequest,
    user: Recruiter,
    session: SessionDep,
    settings: SettingsDep,
    engine: EngineDep,
    request: Request,
) -> MessagePublic:
    """Queue a message to the candidate. Its status moves queued → sending → sent (or failed);
    with `send_at` (or the company's undo window) it is `scheduled` first, and
    POST /v1/messages/{id}/cancel takes it back until then. From a template (`template_id`),
    a field without a fallback that is empty refuses the send (422 naming it)."""
    candidate = await run_in_threadpool(
        get_owned, session, Candidate, candidate_id, user.company_id, "candidate"
    )
    refuse_if_erased(candidate)

    async def start(queued: Message) -> bool:
        # The workflow service is reached only for a message that passed every check.
        return await start_send(await temporal_client(request), settings, queued)

    message = await insert_then_start(
        lambda: service.queue(session, settings, user, candidate, body),
        start,
        lambda queued: service.delete_message(engine, queued.id),
        "The message was not queued",
    )
    return service.public(message, [], settings.public_url, remote_images=False)


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
    query = select(Message).where(
        Message.company_id == user.company_id,
        Message.direction == Direction.INBOUND,
        col(Message.candidate_id).is_(None),
    )
    if before is not None:
        query = query.where(col(Message.created_at) < before)
    rows = session.exec(query.order_by(col(Message.created_at).desc()).limit(limit)).all()
    return to_public_list(session, list(rows), settings.public_url, remote_images)


@router.get("/v1/messages/{message_id}", response_model=MessagePublic)
def read_message(
    message_id: str,
    user: Recruiter,
    session: SessionDep,
    settings: SettingsDep,
    remote_images: RemoteImages = False,
) -> MessagePublic:
    message = get_owned(session, Message, message_id, user.company_id, "message")
    return to_public(session, message, settings.public_url, remote_images)


async def _wake(temporal: Client, message: Message) -> None:
    """Tell the message's run to look again (a cancel or a new time); the database decides,
    so a signal that does not arrive only delays the run's look until the old time."""
    try:
        await temporal.get_workflow_handle(message.run_id).signal(RESCHEDULED)
    except Exception:
        log.warning("could not wake the run of message %s", message.id, exc_info=True)


@router.post("/v1/messages/{message_id}/cancel", response_model=MessagePublic)
async def cancel_message(
    message_id: str,
    user: Recruiter,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
) -> MessagePublic:
    """Cancel a `scheduled` message (send later, or within the undo window): it becomes
    `cancelled` and is never sent. 409 "already sent" once its time came."""
    message = await run_in_threadpool(
        get_owned, session, Message, message_id, user.company_id, "message"
    )
    await run_in_threadpool(service.cancel_scheduled, session, user, message)
    await _wake(temporal, message)
    return service.public(message, [], settings.public_url, remote_images=False)


@router.patch("/v1/messages/{message_id}", response_model=MessagePublic)
async def edit_message(
    message_id: str,
    body: MessageUpdate,
    user: Recruiter,
    session: SessionDep,
    settings: SettingsDep,
    temporal: TemporalDep,
) -> MessagePublic:
    """Change a `scheduled` message's subject, text, HTML or send_at. 409 "already sent" once
    its time came."""
    message = await run_in_threadpool(
        get_owned, session, Message, message_id, user.company_id, "message"
    )
    moved = await run_in_threadpool(service.edit_scheduled, session, settings, user, message, body)
    if moved:
        await _wake(temporal, message)
    return service.public(message, [], settings.public_url, remote_images=False)


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
    message = get_owned(session, Message, message_id, user.company_id, "message")
    candidate = get_owned(session, Candidate, body.candidate_id, user.company_id, "candidate")
    refuse_if_erased(candidate)
    service.assign(session, user, message, candidate, remember=body.remember_address)
    return to_public(session, message, settings.public_url)


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
    message = get_owned(session, Message, message_id, user.company_id, "message")
    return service.candidate_from_message(session, user, message, body or CandidateFromMessage())


@router.get("/v1/messages/{message_id}/attachments/{attachment_id}")
def download_attachment(
    message_id: str,
    attachment_id: str,
    user: Recruiter,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    message = get_owned(session, Message, message_id, user.company_id, "message")
    attachment = session.get(Attachment, parse_id(attachment_id, "attachment"))
    if attachment is None or attachment.message_id != message.id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "attachment not found")
    # Always a download, never rendered inline: a received HTML file must not run in our origin.
    return Response(
        content=files_at_rest.opened(
            secret_box(settings), attachment.id, attachment.content, attachment.sealed
        ),
        media_type=attachment.content_type or "application/octet-stream",
        headers={
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(attachment.filename)}",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox",
            "Digest": f"sha-256={attachment.sha256}",
        },
    )
