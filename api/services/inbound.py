"""Received mail as the API takes it and files it: Mailjet's Parse API posts
(`POST /inbound/mailjet`) rebuilt into RFC 5322 bytes, so they take the same path as mail
received over SMTP (stored raw, then parsed and routed); a received message assigned to a
candidate by hand; an emailed application made a candidate. Each change commits with its
audit line and event."""

from __future__ import annotations

import base64
import uuid
from email.message import EmailMessage
from email.parser import HeaderParser
from typing import Any

from sqlalchemy import Engine, func
from sqlmodel import Session, select

from api.schemas import (
    CandidateFromMessage,
)
from api.services import messages
from api.services.common import check_entity
from core import audit, events
from core.errors import Conflict, Refused
from core.events import EventType
from core.inbound import intake
from core.mail import check_header_text, normalize_address
from core.models import (
    Candidate,
    CandidateAddress,
    Direction,
    Message,
    User,
    utcnow,
)
from core.settings import Settings
from core.statuses import MatchReason

_SKIPPED_MAILJET_HEADERS = {"content-type", "content-transfer-encoding", "mime-version"}


def mailjet_to_mime(post: dict[str, Any]) -> bytes:
    """Rebuild a Mailjet Parse API post into RFC 5322 bytes, so it takes the same path as SMTP.

    Raises ValueError naming the problem when the post is not a Parse API payload.
    """
    if not isinstance(post, dict) or not isinstance(post.get("Headers"), dict):
        raise ValueError("not a Mailjet Parse API post: the Headers object is missing")
    msg = EmailMessage()
    for name, value in post["Headers"].items():
        if name.lower() in _SKIPPED_MAILJET_HEADERS:
            continue
        for item in value if isinstance(value, list) else [value]:
            text = " ".join(str(item).split())  # no header injection through folded values
            if text:
                msg[name] = text
    if "From" not in msg and post.get("From"):
        msg["From"] = " ".join(str(post["From"]).split())
    if "Subject" not in msg and post.get("Subject"):
        msg["Subject"] = " ".join(str(post["Subject"]).split())
    msg.set_content(str(post.get("Text-part") or ""))
    if post.get("Html-part"):
        msg.add_alternative(str(post["Html-part"]), subtype="html")
    types = _mailjet_part_types(post.get("Parts"))
    index = 1
    while f"Attachment{index}" in post:
        key = f"Attachment{index}"
        try:
            content = base64.b64decode(str(post[key]), validate=False)
        except ValueError as exc:
            raise ValueError(f"{key} is not base64") from exc
        content_type, filename = types.get(key, ("application/octet-stream", key))
        maintype, _, subtype = content_type.partition("/")
        msg.add_attachment(
            content, maintype=maintype, subtype=subtype or "octet-stream", filename=filename
        )
        index += 1
    return msg.as_bytes()


def _mailjet_part_types(parts: object) -> dict[str, tuple[str, str]]:
    found: dict[str, tuple[str, str]] = {}
    for part in parts if isinstance(parts, list) else []:
        if not isinstance(part, dict) or not isinstance(part.get("Headers"), dict):
            continue
        ref = str(part.get("ContentRef", ""))
        headers = {k.lower(): str(v) for k, v in part["Headers"].items()}
        content_type = headers.get("content-type", "application/octet-stream")
        parser = HeaderParser().parsestr(
            f"Content-Type: {content_type}\nContent-Disposition: "
            f"{headers.get('content-disposition', 'attachment')}\n\n"
        )
        filename = parser.get_filename() or parser.get_param("name") or ref
        found[ref] = (parser.get_content_type(), str(filename))
    return found


def assign(
    session: Session, user: User, message_id: str, candidate_id: uuid.UUID, *, remember: bool
) -> Message:
    """Move an inbound message to a candidate; with `remember`, the sender's address becomes
    one of the candidate's."""
    message = messages.owned_message(session, user, message_id)
    candidate = messages.owned_candidate(session, user, candidate_id)
    if message.direction != Direction.INBOUND:
        raise Conflict("Only inbound messages can be assigned to a candidate.")
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
    return message


def candidate_from_message(
    session: Session, user: User, message_id: str, body: CandidateFromMessage
) -> Candidate:
    message = messages.owned_message(session, user, message_id)
    if message.direction != Direction.INBOUND:
        raise Conflict("Only a received message can become a candidate.")
    if message.candidate_id is not None:
        raise Conflict(
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
        raise Conflict(
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
        raise Refused(
            "email: the message's sender has no usable address; give one.",
        ) from None


def _remember(
    session: Session, company_id: uuid.UUID, candidate: Candidate, address: str
) -> str | None:
    address = address.strip().lower()
    if not address or "@" not in address:
        raise Refused(
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
        raise Conflict(
            f"remember_address: {address} is already remembered for another candidate.",
        )
    if existing is None:
        session.add(
            CandidateAddress(company_id=company_id, candidate_id=candidate.id, email=address)
        )
    return address


def served(engine: Engine, settings: Settings, addresses: list[str]) -> dict[str, uuid.UUID]:
    """The companies the recipients belong to (hosted or proven custom addresses), by address."""
    found: dict[str, uuid.UUID] = {}
    with Session(engine) as session:
        for address in addresses:
            company_id = intake.company_for_recipient(session, settings, address)
            if company_id is not None:
                found[address.lower()] = company_id
    return found
