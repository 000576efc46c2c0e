"""Messages as the API changes them: queueing one to a candidate, assigning a received one,
and making a candidate of an emailed application. The routes in api/routers/messages.py stay
thin; each change commits with its audit line."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, delete
from sqlmodel import Session, col

from api.schemas import (
    MessageUpdate,
    SendMessageRequest,
)
from api.services import attachments, templates
from core import attachments as files_at_rest
from core import audit, events
from core.db import session_scope
from core.errors import Conflict, Refused
from core.events import EventType
from core.mail import new_message_id
from core.models import (
    Attachment,
    Candidate,
    Company,
    Direction,
    Event,
    Message,
    User,
)
from core.run_ids import send_workflow_id
from core.send import schedule
from core.settings import Settings
from core.statuses import MessageStatus
from core.templates import grammar


def undo_seconds(settings: Settings, company: Company) -> int:
    """The undo window in effect: the company's, else the platform's."""
    return company.undo_seconds if company.undo_seconds is not None else settings.undo_seconds


def _send_at(wanted: datetime | None, hold: int) -> datetime | None:
    try:
        return schedule.due_at(wanted, hold)
    except ValueError as exc:
        raise Refused(str(exc)) from None


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
                raise Refused(
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
        raise Refused(str(err)) from None
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
            files_at_rest.delete_attachments(session, col(Attachment.message_id) == message_id)
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


def _scheduled_outbound(message: Message) -> None:
    if message.direction != Direction.OUTBOUND or message.bulk_job_id is not None:
        raise Conflict(
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
        raise Conflict(f"This message is {err}") from None
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
            raise Refused(f"{name}: must not be null")
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
            files_at_rest.delete_attachments(session, col(Attachment.message_id) == message.id)
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
