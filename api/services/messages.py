"""Messages as the API shows them: a candidate's Messages tab, Unassigned, one message, its
attachments' metadata and a download, with HTML made safe to show. Reads only; every query is
scoped to the caller's company."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select as core_select
from sqlmodel import Session, col, select

from api.schemas import (
    AttachmentPublic,
    MessagePublic,
    MessageSegment,
)
from api.services.common import get_owned, parse_id
from api.services.privacy import refuse_if_erased
from core import attachments as files_at_rest
from core.errors import NotFound
from core.inbound.html import safe_html, screen, with_attachment_urls
from core.inbound.segments import split_reply
from core.models import Attachment, Candidate, Direction, Message, User
from core.security import secret_box
from core.settings import Settings


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
        public(message, by_message[message.id], base_url, remote_images) for message in messages
    ]


def for_candidate(
    session: Session, settings: Settings, user: User, candidate_id: str, remote_images: bool
) -> list[MessagePublic]:
    """A candidate's Messages tab, oldest first: both directions."""
    candidate = get_owned(session, Candidate, candidate_id, user.company_id, "candidate")
    rows = session.exec(
        select(Message)
        .where(Message.company_id == user.company_id, Message.candidate_id == candidate.id)
        .order_by(col(Message.created_at), col(Message.id))
    ).all()
    return to_public_list(session, list(rows), settings.public_url, remote_images)


def unassigned(
    session: Session,
    settings: Settings,
    user: User,
    limit: int,
    before: datetime | None,
    remote_images: bool,
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


def read(
    session: Session, settings: Settings, user: User, message_id: str, remote_images: bool
) -> MessagePublic:
    message = get_owned(session, Message, message_id, user.company_id, "message")
    return to_public(session, message, settings.public_url, remote_images)


@dataclass
class File:
    """An attachment's bytes, opened, with what a download names it by."""

    content: bytes
    filename: str
    content_type: str
    sha256: str


def attachment_file(
    session: Session, settings: Settings, user: User, message_id: str, attachment_id: str
) -> File:
    message = get_owned(session, Message, message_id, user.company_id, "message")
    attachment = session.get(Attachment, parse_id(attachment_id, "attachment"))
    if attachment is None or attachment.message_id != message.id:
        raise NotFound("attachment not found")
    return File(
        content=files_at_rest.read_all(
            session,
            secret_box(settings),
            attachment.id,
            attachment.content,
            attachment.sealed,
            attachment.chunks,
        ),
        filename=attachment.filename,
        content_type=attachment.content_type or "application/octet-stream",
        sha256=attachment.sha256,
    )


def owned_message(session: Session, user: User, message_id: str) -> Message:
    return get_owned(session, Message, message_id, user.company_id, "message")


def owned_candidate(session: Session, user: User, candidate_id: str | uuid.UUID) -> Candidate:
    """One of the caller's candidates, refused (409) once erased or being erased."""
    candidate = get_owned(session, Candidate, candidate_id, user.company_id, "candidate")
    refuse_if_erased(candidate)
    return candidate
