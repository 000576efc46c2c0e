from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Query, Response, status
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import func
from sqlalchemy import select as core_select
from sqlmodel import Session, col, select
from temporalio.client import Client

from api.deps import Recruiter, SessionDep, SettingsDep, TemporalDep, parse_id
from api.routers.candidates import check_entity
from api.routers.common import get_owned, start_or_undo
from api.schemas import (
    AssignRequest,
    AttachmentPublic,
    CandidateFromMessage,
    CandidatePublic,
    MessagePublic,
    SendMessageRequest,
)
from core import audit
from core.db import session_scope
from core.mail import check_header_text, new_message_id, normalize_address
from core.models import Attachment, Candidate, CandidateAddress, Direction, Message, utcnow
from core.run_ids import send_workflow_id
from core.settings import Settings
from core.statuses import MatchReason, MessageStatus
from workflows.client import start_send_run

router = APIRouter(tags=["messages"])


def to_public(session: Session, message: Message) -> MessagePublic:
    return to_public_list(session, [message])[0]


def to_public_list(session: Session, messages: list[Message]) -> list[MessagePublic]:
    """Messages with their attachments' metadata, loaded in one query (never the content)."""
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
            )
            .where(col(Attachment.message_id).in_(ids))
            .order_by(col(Attachment.filename))
        ).all()
        for attachment_id, message_id, filename, content_type, size, sender in rows:
            by_message[message_id].append(
                AttachmentPublic(
                    id=attachment_id,
                    filename=filename,
                    content_type=content_type,
                    size=size,
                    original_sender=sender,
                )
            )
    public = []
    for message in messages:
        item = MessagePublic.model_validate(message)
        item.attachments = by_message[message.id]
        public.append(item)
    return public


@router.get("/v1/candidates/{candidate_id}/messages", response_model=list[MessagePublic])
def list_candidate_messages(
    candidate_id: str, user: Recruiter, session: SessionDep
) -> list[MessagePublic]:
    candidate = get_owned(session, Candidate, candidate_id, user.company_id, "candidate")
    rows = session.exec(
        select(Message)
        .where(Message.company_id == user.company_id, Message.candidate_id == candidate.id)
        .order_by(col(Message.created_at), col(Message.id))
    ).all()
    return to_public_list(session, list(rows))


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
    temporal: TemporalDep,
) -> MessagePublic:
    """Queue a message to the candidate. Its status moves queued → sending → sent (or failed)."""
    candidate = await run_in_threadpool(
        get_owned, session, Candidate, candidate_id, user.company_id, "candidate"
    )
    message_id = uuid.uuid4()
    message = Message(
        id=message_id,
        company_id=user.company_id,
        candidate_id=candidate.id,
        direction=Direction.OUTBOUND,
        status=MessageStatus.QUEUED,
        to_addresses=[candidate.email],
        subject=body.subject,
        text=body.text,
        html=body.html,
        message_id_header=new_message_id(settings.platform_mail_domain),
        sender_user_id=user.id,
        workflow_id=send_workflow_id(str(message_id)),
    )
    await run_in_threadpool(_insert, session, message)
    await start_or_undo(
        start_send(temporal, settings, message),
        lambda: _delete(session.bind, message.id),
        "The message was not queued",
        message.run_id,
    )
    return MessagePublic.model_validate(message)


async def start_send(client: Client, settings: Settings, message: Message) -> bool:
    """Start send-message-{id} (workflows/client.py): never twice for one message."""
    return await start_send_run(
        client,
        settings,
        message_id=str(message.id),
        company_id=str(message.company_id),
        workflow_id=message.run_id,
    )


def _insert(session: Session, message: Message) -> None:
    session.add(message)
    session.commit()


def _delete(engine, message_id: uuid.UUID) -> None:
    with session_scope(engine) as session:
        row = session.get(Message, message_id)
        if row is not None:
            session.delete(row)


@router.get("/v1/messages/unassigned", response_model=list[MessagePublic])
def list_unassigned(
    user: Recruiter,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before: datetime | None = None,
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
    return to_public_list(session, list(rows))


@router.get("/v1/messages/{message_id}", response_model=MessagePublic)
def read_message(message_id: str, user: Recruiter, session: SessionDep) -> MessagePublic:
    return to_public(session, get_owned(session, Message, message_id, user.company_id, "message"))


@router.post("/v1/messages/{message_id}/assign", response_model=MessagePublic)
def assign_message(
    message_id: str, body: AssignRequest, user: Recruiter, session: SessionDep
) -> MessagePublic:
    """Move an inbound message to a candidate. With `remember_address`, the sender's address
    becomes one of the candidate's, so that sender's next mail routes by itself."""
    message = get_owned(session, Message, message_id, user.company_id, "message")
    if message.direction != Direction.INBOUND:
        raise HTTPException(
            status.HTTP_409_CONFLICT, "Only inbound messages can be assigned to a candidate."
        )
    candidate = get_owned(session, Candidate, body.candidate_id, user.company_id, "candidate")
    before = str(message.candidate_id) if message.candidate_id else None
    message.candidate_id = candidate.id
    message.match_reason = MatchReason.MANUAL
    message.match_detail = f"assigned by {user.name}"
    message.updated_at = utcnow()
    remembered = None
    if body.remember_address:
        remembered = _remember(
            session, user.company_id, candidate, message.forwarded_from or message.from_address
        )
    audit.record(
        session,
        company_id=user.company_id,
        user_id=user.id,
        action="message.assign",
        target=f"message:{message.id}",
        before={"candidate_id": before},
        after={"candidate_id": str(candidate.id)},
        remembered_address=remembered,
    )
    session.commit()
    return to_public(session, message)


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
    body = body or CandidateFromMessage()
    message = get_owned(session, Message, message_id, user.company_id, "message")
    if message.direction != Direction.INBOUND:
        raise HTTPException(
            status.HTTP_409_CONFLICT, "Only a received message can become a candidate."
        )
    if message.candidate_id is not None:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"This message already belongs to candidate {message.candidate_id}.",
        )
    email = body.email or _sender_address(message)
    name = body.name or _sender_name(message) or email.split("@")[0]
    existing = session.exec(
        select(Candidate).where(
            Candidate.company_id == user.company_id, func.lower(Candidate.email) == email.lower()
        )
    ).first()
    if existing is not None:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"{email} is already the address of candidate {existing.id}: assign the message "
            f"to that candidate (POST /v1/messages/{message.id}/assign).",
        )
    check_entity(session, user.company_id, body.legal_entity_id)
    candidate = Candidate(
        company_id=user.company_id,
        legal_entity_id=body.legal_entity_id,
        name=name.strip()[:200],
        email=email,
    )
    session.add(candidate)
    session.flush()
    message.candidate_id = candidate.id
    message.match_reason = MatchReason.MANUAL
    message.match_detail = f"candidate created from this message by {user.name}"
    message.updated_at = utcnow()
    remembered = _remember(
        session, user.company_id, candidate, message.forwarded_from or message.from_address
    )
    audit.record(
        session,
        company_id=user.company_id,
        user_id=user.id,
        action="candidate.create_from_message",
        target=f"candidate:{candidate.id}",
        message_id=str(message.id),
        remembered_address=remembered,
    )
    session.commit()
    return candidate


def _sender_name(message: Message) -> str:
    """The sender's display name, when a header can carry it back out (it came from outside).
    For a colleague's forward, the original sender's."""
    name = message.from_name if not message.forwarded_from else message.forwarded_from_name or ""
    try:
        return check_header_text(name).strip()
    except ValueError:
        return ""


def _sender_address(message: Message) -> str:
    try:
        return normalize_address(message.forwarded_from or message.from_address)
    except ValueError:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            "email: the message's sender has no usable address; give one.",
        ) from None


def _remember(
    session: Session, company_id: uuid.UUID, candidate: Candidate, address: str
) -> str | None:
    address = address.strip().lower()
    if not address or "@" not in address:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            "remember_address: the message has no sender address to remember.",
        )
    if address == candidate.email.lower():
        return None  # already the candidate's own address
    existing = session.exec(
        select(CandidateAddress).where(
            CandidateAddress.company_id == company_id, CandidateAddress.email == address
        )
    ).first()
    if existing is not None and existing.candidate_id != candidate.id:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"remember_address: {address} is already remembered for another candidate.",
        )
    if existing is None:
        session.add(
            CandidateAddress(company_id=company_id, candidate_id=candidate.id, email=address)
        )
    return address


@router.get("/v1/messages/{message_id}/attachments/{attachment_id}")
def download_attachment(
    message_id: str, attachment_id: str, user: Recruiter, session: SessionDep
) -> Response:
    message = get_owned(session, Message, message_id, user.company_id, "message")
    attachment = session.get(Attachment, parse_id(attachment_id, "attachment"))
    if attachment is None or attachment.message_id != message.id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "attachment not found")
    # Always a download, never rendered inline: a received HTML file must not run in our origin.
    return Response(
        content=attachment.content,
        media_type=attachment.content_type or "application/octet-stream",
        headers={
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(attachment.filename)}",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox",
            "Digest": f"sha-256={attachment.sha256}",
        },
    )
