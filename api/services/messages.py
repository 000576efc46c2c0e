"""Messages as the API changes them: queueing one to a candidate, assigning a received one,
and making a candidate of an emailed application. The routes in api/routers/messages.py stay
thin; each change commits with its audit line."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import HTTPException, status
from sqlalchemy import Engine, delete, func
from sqlmodel import Session, col, select

from api.routers.common import check_entity
from api.schemas import (
    AttachmentPublic,
    CandidateFromMessage,
    MessagePublic,
    MessageSegment,
    MessageUpdate,
    SendMessageRequest,
)
from api.services import attachments, templates
from core import audit, events
from core.db import session_scope
from core.events import EventType
from core.inbound.html import safe_html, screen, with_attachment_urls
from core.inbound.segments import split_reply
from core.mail import check_header_text, new_message_id, normalize_address
from core.models import (
    Attachment,
    Candidate,
    CandidateAddress,
    Company,
    Direction,
    Event,
    Message,
    User,
    utcnow,
)
from core.run_ids import send_workflow_id
from core.send import schedule
from core.settings import Settings
from core.statuses import MatchReason, MessageStatus
from core.templates import grammar


def undo_seconds(settings: Settings, company: Company) -> int:
    """The undo window in effect: the company's, else the platform's."""
    return company.undo_seconds if company.undo_seconds is not None else settings.undo_seconds


def _send_at(wanted: datetime | None, hold: int) -> datetime | None:
    try:
        return schedule.due_at(wanted, hold)
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None


def queue(
    session: Session,
    settings: Settings,
    user: User,
    candidate: Candidate,
    body: SendMessageRequest,
) -> Message:
    """A new outbound message at `queued` (or `scheduled`, to send later or within the undo
    window), its words rendered and stored, committed: its run is started next."""
    if body.template_id is None:
        for name in ("subject", "text"):
            if getattr(body, name) is None:
                raise HTTPException(
                    status.HTTP_422_UNPROCESSABLE_CONTENT,
                    f"{name}: Field required (or give a template_id)",
                )
    writer = templates.Writer.load(session, user, body.template_id, body.data, body.signature)
    message_id = uuid.uuid4()
    invitation = None
    if body.invitation is not None:
        invitation = templates.plan_invitation(
            session, settings, user.company_id, candidate, message_id, body.invitation
        )
    try:
        words = writer.words(
            candidate,
            subject=body.subject,
            text=body.text,
            html=body.html,
            literal=True,
            interview=body.invitation.model_dump() if body.invitation is not None else None,
        )
    except grammar.MissingFields as err:
        raise templates.refuse_missing(err) from None
    except templates.OtherEntity as err:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(err)) from None
    send_at = _send_at(body.send_at, undo_seconds(settings, writer.company))
    message = Message(
        id=message_id,
        company_id=user.company_id,
        candidate_id=candidate.id,
        direction=Direction.OUTBOUND,
        status=MessageStatus.SCHEDULED if send_at is not None else MessageStatus.QUEUED,
        to_addresses=[candidate.email],
        subject=words.subject,
        text=words.text,
        html=words.html,
        message_id_header=new_message_id(settings.platform_mail_domain),
        sender_user_id=user.id,
        workflow_id=send_workflow_id(str(message_id)),
        send_at=send_at,
        template_id=writer.template.id if writer.template is not None else None,
        template_language=words.language,
        sender_name_mode=writer.template.sender if writer.template is not None else None,
        invitation=invitation,
    )
    files = attachments.files_for_send(
        session, settings, user.company_id, writer.template, body.attachments, body.attachment_ids
    )
    message.has_attachments = bool(files)
    session.add(message)
    if files:
        session.flush()  # the message row first: its attachments refer to it
        attachments.attach(session, settings, message_id, files)
    if send_at is not None:
        events.message_event(
            session, message, EventType.MESSAGE_SCHEDULED, send_at=send_at.isoformat()
        )
    session.commit()
    return message


def delete_message(engine: Engine, message_id: uuid.UUID) -> None:
    """Undo queue() when the message's run could not start: the message, the attachments it
    was given, and its `message.scheduled` event while no feed or webhook has numbered it."""
    with session_scope(engine) as session:
        row = session.get(Message, message_id)
        if row is not None:
            session.execute(delete(Attachment).where(col(Attachment.message_id) == message_id))
            session.execute(
                delete(Event).where(
                    col(Event.company_id) == row.company_id,
                    col(Event.type) == EventType.MESSAGE_SCHEDULED,
                    col(Event.seq).is_(None),
                    Event.data["message_id"].as_string() == str(message_id),
                )
            )
            session.flush()
            session.delete(row)


def assign(
    session: Session, user: User, message: Message, candidate: Candidate, *, remember: bool
) -> None:
    if message.direction != Direction.INBOUND:
        raise HTTPException(
            status.HTTP_409_CONFLICT, "Only inbound messages can be assigned to a candidate."
        )
    before = str(message.candidate_id) if message.candidate_id else None
    message.candidate_id = candidate.id
    message.match_reason = MatchReason.MANUAL
    message.match_detail = f"assigned by {user.name}"
    message.updated_at = utcnow()
    remembered = None
    if remember:
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
    events.message_event(
        session,
        message,
        EventType.MESSAGE_ASSIGNED,
        previous_candidate_id=before,
        match_reason=message.match_reason,
        by_user_id=str(user.id),
    )
    session.commit()


def candidate_from_message(
    session: Session, user: User, message: Message, body: CandidateFromMessage
) -> Candidate:
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
    events.emit(
        session,
        user.company_id,
        EventType.CANDIDATE_CREATED_FROM_MESSAGE,
        {
            "candidate_id": str(candidate.id),
            "message_id": str(message.id),
            "by_user_id": str(user.id),
        },
        personal={
            "candidate_name": candidate.name,
            "sender_address": message.from_address,
            "subject": message.subject,
        },
        candidate_id=candidate.id,
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


def public(
    message: Message, attachments: list[AttachmentPublic], base_url: str, remote_images: bool
) -> MessagePublic:
    """A message as the API shows it: its HTML made safe, with `cid:` images pointing to its own
    attachments' download URLs, and, received, the reply apart from its quoted history."""
    item = MessagePublic.model_validate(message)
    item.attachments = attachments
    if message.direction == Direction.INBOUND and message.erased_at is None:
        if message.segments is None:  # received before segments were stored: today's rules
            split = split_reply(message.text)
            item.reply_text, item.quoted_text, item.signature = (
                split.reply_text, split.quoted_text, split.signature,
            )  # fmt: skip
            item.segments = [MessageSegment(kind=s.kind, text=s.text) for s in split.segments]
    else:
        item.reply_text = item.quoted_text = item.signature = item.segments = None
    if message.html and message.html_note is None:
        item.html_safe, item.reply_html_safe = _safe_copies(
            message, attachments, base_url, remote_images
        )
    return item


def _safe_copies(
    message: Message, attachments: list[AttachmentPublic], base_url: str, remote_images: bool
) -> tuple[str | None, str | None]:
    """The HTML and the folded HTML safe to show: the copies made when the message was stored,
    with their inline images' download URLs. Made now only with remote images (or for mail
    stored before copies were kept), within the same parsing budget."""
    root = f"{base_url.rstrip('/')}/v1/messages/{message.id}/attachments/"
    if message.html_safe is not None and not remote_images:
        urls = {str(a.id): f"{root}{a.id}" for a in attachments}
        whole = with_attachment_urls(message.html_safe, urls)
        folded = message.reply_html_safe
        return whole, with_attachment_urls(folded, urls) if folded is not None else whole
    if message.html is None or screen(message.html) is not None:
        return None, None
    inline = {a.content_id: a.id for a in attachments if a.content_id}

    def image(cid: str) -> str | None:
        found = inline.get(cid)
        return f"{root}{found}" if found else None

    whole = safe_html(message.html, images=image, remote_images=remote_images)
    if message.reply_html is None:
        return whole, whole
    return whole, safe_html(message.reply_html, images=image, remote_images=remote_images)


def _scheduled_outbound(message: Message) -> None:
    if message.direction != Direction.OUTBOUND or message.bulk_job_id is not None:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            "Only a single outbound message can be cancelled or changed here (a bulk send's "
            "messages: POST /v1/bulk-messages/{id}/cancel).",
        )


def _while_scheduled(
    session: Session,
    user: User,
    message: Message,
    action: str,
    move: Callable[[], None],
    **audit_of: Any,
) -> None:
    """One move of a scheduled message, audited; 409 with the truth when it lost the race."""
    _scheduled_outbound(message)
    try:
        move()
    except schedule.NotScheduled as err:
        session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, f"This message is {err}") from None
    audit.record(
        session,
        company_id=user.company_id,
        user_id=user.id,
        action=action,
        target=f"message:{message.id}",
        **audit_of,
    )
    session.commit()


def cancel_scheduled(session: Session, user: User, message: Message) -> None:
    """Cancel a message that waits (send later, or the undo window); 409 once it went."""
    _while_scheduled(
        session, user, message, "message.cancel", lambda: schedule.cancel(session, message)
    )


def edit_scheduled(
    session: Session, settings: Settings, user: User, message: Message, body: MessageUpdate
) -> bool:
    """Change a scheduled message's words, files or time; True when its time changed (its run
    is told). 409 once it went. The files are composed when the time comes, like the words."""
    changes = body.model_dump(exclude_unset=True)
    asked = sorted(changes)
    for name in ("subject", "text", "send_at", "attachment_ids"):
        if name in changes and changes[name] is None:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"{name}: must not be null")
    if "send_at" in changes:
        changes["send_at"] = _send_at(body.send_at, 0)
    files = None
    if "attachment_ids" in changes:
        files = attachments.files_for_send(
            session, settings, user.company_id, None, None, changes.pop("attachment_ids")
        )
        changes["has_attachments"] = bool(files)

    def move() -> None:
        schedule.edit(session, message, changes)  # first: it fails when the message went
        if files is not None:
            session.execute(delete(Attachment).where(col(Attachment.message_id) == message.id))
            attachments.attach(session, settings, message.id, files)

    _while_scheduled(
        session,
        user,
        message,
        "message.edit",
        move,
        fields=asked,
    )
    return "send_at" in changes
