"""A candidate's data on request: erasure (registered here, carried out by the erase-candidate
run) and export (a zip streamed as it is written: every message as an .eml file, every
attachment, and a messages.json index).

The export holds one message or one attachment in memory at a time, so its memory stays flat
however many messages there are; the largest is bounded by the receiver's message limit
(RECRUITMAIL_INBOUND_MAX_MESSAGE_BYTES, 25 MiB by default)."""

from __future__ import annotations

import io
import json
import re
import uuid
import zipfile
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy import select as core_select
from sqlmodel import Session, col, select

from api.schemas import PrivacyUpdate
from core import attachments as files_at_rest
from core import audit
from core.db import session_scope
from core.errors import Conflict, Refused
from core.models import (
    Attachment,
    Candidate,
    Company,
    CompanyPrivacy,
    Direction,
    Erasure,
    InboundRaw,
    Message,
    User,
    utcnow,
)
from core.privacy import candidate_addresses, register_erasure, their_messages
from core.security import SecretBox
from core.send import compose

# Messages read per database session: a long export never holds one read transaction.
PAGE = 50
_UNSAFE = re.compile(r"[^\w.\- ]+", re.UNICODE)


def refuse_if_erased(candidate: Candidate) -> None:
    """409 for a change to a candidate whose data is erased, or being erased."""
    if candidate.erased_at is not None:
        raise Conflict(
            f"candidate {candidate.id} was erased on {candidate.erased_at:%Y-%m-%d}: "
            "nothing more can be sent to, changed on or added to an erased candidate",
        )
    if candidate.erasure_requested_at is not None:
        raise Conflict(
            f"candidate {candidate.id} is being erased (GET /v1/candidates/{candidate.id} shows "
            "when it is done): nothing more can be sent to or changed on this candidate",
        )


def request_erasure(session: Session, user: User, candidate: Candidate) -> tuple[Erasure, bool]:
    """The candidate's erasure, committed, and whether it is new. Asked again after it was
    done, the same erasure runs again and erases whatever came since (its run is started, or
    the sweeper starts it)."""
    existing = session.exec(select(Erasure).where(Erasure.candidate_id == candidate.id)).first()
    if existing is not None:
        if existing.status == "done":
            existing.status = "running"
            existing.finished_at = None
            session.add(existing)
            audit.record(
                session, company_id=user.company_id, user_id=user.id,
                action="candidate.erase_again", target=f"candidate:{candidate.id}",
            )  # fmt: skip
            session.commit()
        return existing, False
    erasure = register_erasure(session, candidate, reason="request", user_id=user.id)
    session.commit()
    return erasure, True


def undo_erasure(engine: Engine, erasure_id: uuid.UUID) -> None:
    """The erasure's run could not start: as if it had not been asked (the caller may retry)."""
    with session_scope(engine) as session:
        erasure = session.get(Erasure, erasure_id)
        if erasure is None or erasure.status != "running":
            return
        candidate = session.get(Candidate, erasure.candidate_id)
        if candidate is not None and candidate.erased_at is None:
            candidate.erasure_requested_at = None
            session.add(candidate)
        session.delete(erasure)


# -- export ------------------------------------------------------------------------------------


class _Sink(io.RawIOBase):
    """What the zip writer writes to: kept until the response takes it. No seek, so zipfile
    writes each entry's sizes after its data (a data descriptor) and never goes back."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._offset = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._chunks.append(chunk)
        self._offset += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._offset

    def take(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data


def _safe_name(name: str, fallback: str) -> str:
    cleaned = _UNSAFE.sub("_", name).strip(" .")[:120]
    return cleaned or fallback


def export_zip(
    engine: Engine,
    box: SecretBox,
    company_id: uuid.UUID,
    user_id: uuid.UUID,
    candidate_id: uuid.UUID,
) -> Iterator[bytes]:
    """The zip, chunk by chunk: messages/NNNN-….eml, attachments/<message id>/<file name>,
    messages.json. Messages to or from the candidate, with the Unassigned ones from their
    addresses, oldest first."""
    sink = _Sink()
    index: list[dict[str, Any]] = []
    with session_scope(engine) as session:
        candidate = session.get(Candidate, candidate_id)
        if candidate is None or candidate.company_id != company_id:
            return
        about = {
            "id": str(candidate.id),
            "name": candidate.name,
            "email": candidate.email,
            "application_status": candidate.application_status,
            "created_at": candidate.created_at.isoformat(),
        }
        addresses = candidate_addresses(session, candidate)
        found = [
            row
            for condition in their_messages(candidate, addresses)
            for row in session.exec(select(Message.created_at, Message.id).where(condition)).all()
        ]
        ids = [message_id for _, message_id in sorted(found)]
        audit.record(
            session,
            company_id=company_id,
            user_id=user_id,
            action="candidate.export",
            target=f"candidate:{candidate.id}",
            messages=len(ids),
        )
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for start in range(0, len(ids), PAGE):
            with Session(engine) as session:
                for number, message_id in enumerate(ids[start : start + PAGE], start + 1):
                    index.append(_write_message(session, box, archive, number, message_id))
                    session.expunge_all()
                    yield sink.take()
        archive.writestr(
            "messages.json",
            json.dumps(
                {
                    "candidate": about,
                    "exported_at": utcnow().isoformat(),
                    "messages": index,
                },
                indent=2,
                ensure_ascii=False,
            ),
        )
    yield sink.take()


def _write_message(
    session: Session, box: SecretBox, archive: zipfile.ZipFile, number: int, message_id: uuid.UUID
) -> dict[str, Any]:
    message = session.get(Message, message_id)
    assert message is not None  # rows are not deleted under a candidate (erasure keeps them)
    stamp = _stamp(message.created_at)
    entry: dict[str, Any] = {
        "id": str(message.id),
        "direction": message.direction,
        "status": message.status,
        "kind": message.kind,
        "created_at": message.created_at.isoformat(),
        "sent_at": message.sent_at.isoformat() if message.sent_at else None,
        "from": message.from_address,
        "to": list(message.to_addresses),
        "subject": message.subject,
        "message_id": message.message_id_header,
        "assigned": message.candidate_id is not None,
        "eml": None,
        "attachments": [],
    }
    raw: bytes | None = message.raw_mime
    if message.direction == Direction.INBOUND and message.inbound_raw_id is not None:
        raw = session.exec(
            select(InboundRaw.raw).where(InboundRaw.id == message.inbound_raw_id)
        ).first()
    if raw:
        name = f"messages/{number:05d}-{stamp}-{message.direction}.eml"
        with archive.open(name, "w") as out:  # a sent message's files a chunk at a time
            for piece in compose.mime_pieces(session, box, message, raw):
                out.write(piece)
        entry["eml"] = name
    else:
        # Never composed (cancelled before it went out): its text is all there is.
        entry["text"] = message.text
    taken: set[str] = set()
    for attachment_id, filename, content_type, size, sha256 in session.execute(
        core_select(
            col(Attachment.id),
            col(Attachment.filename),
            col(Attachment.content_type),
            col(Attachment.size),
            col(Attachment.sha256),
        )
        .where(col(Attachment.message_id) == message.id)
        .order_by(col(Attachment.filename), col(Attachment.id))
    ).all():
        safe = _safe_name(filename, f"attachment-{len(taken) + 1}")
        while safe in taken:
            safe = f"{len(taken) + 1}-{safe}"
        taken.add(safe)
        path = f"attachments/{message.id}/{safe}"
        stored, sealed, chunks = session.execute(
            core_select(
                col(Attachment.content), col(Attachment.sealed), col(Attachment.chunks)
            ).where(col(Attachment.id) == attachment_id)
        ).one()
        with archive.open(path, "w") as out:  # a chunk at a time
            for piece in files_at_rest.pieces(session, box, attachment_id, stored, sealed, chunks):
                out.write(piece)
        entry["attachments"].append(
            {
                "filename": filename,
                "path": path,
                "content_type": content_type,
                "size": size,
                "sha256": sha256,
            }
        )
    return entry


def _stamp(when: datetime) -> str:
    return when.strftime("%Y%m%dT%H%M%SZ")


# -- the company's rules --------------------------------------------------------------------


def rules(session: Session, user: User) -> CompanyPrivacy:
    """The company's privacy rules (the defaults until it sets any)."""
    return session.get(CompanyPrivacy, user.company_id) or CompanyPrivacy(
        company_id=user.company_id
    )


def update_rules(session: Session, user: User, body: PrivacyUpdate) -> CompanyPrivacy:
    """`notification_names_candidate`, the retention periods and the consent ask's lead time;
    committed with their audit line. They apply to existing data at the next daily sweep."""
    privacy = rules(session, user)
    changes = body.model_dump(exclude_unset=True)
    for name in ("notification_names_candidate", "unassigned_retention_days"):
        if name in changes and changes[name] is None:
            raise Refused(f"{name}: must not be null")
    erase_after = changes.get("erase_after_days_closed", privacy.erase_after_days_closed)
    ask_before = changes.get("consent_extension_days", privacy.consent_extension_days)
    if ask_before is not None and erase_after is not None and ask_before >= erase_after:
        raise Refused(
            f"consent_extension_days: the candidate is asked that many days before the erasure, "
            f"so it must be less than erase_after_days_closed ({erase_after})",
        )
    for name, value in changes.items():
        setattr(privacy, name, value)
    privacy.updated_at = utcnow()
    session.add(privacy)
    audit.record(
        session,
        company_id=user.company_id,
        user_id=user.id,
        action="privacy.update",
        target=f"company:{user.company_id}",
        **changes,
    )
    session.commit()
    return privacy


# -- the candidate's retention page -----------------------------------------------------------


def retention_page_rows(
    engine: Engine, candidate_id: uuid.UUID
) -> tuple[Candidate, Company, CompanyPrivacy | None] | None:
    """The candidate, their company and its rules, for the page the candidate opens."""
    with Session(engine, expire_on_commit=False) as session:
        candidate = session.get(Candidate, candidate_id)
        if candidate is None:
            return None
        company = session.get(Company, candidate.company_id)
        privacy = session.get(CompanyPrivacy, candidate.company_id)
        return (candidate, company, privacy) if company else None


def register_consent_erasure(engine: Engine, candidate_id: uuid.UUID) -> Erasure:
    """The candidate asked from the retention page to be deleted now."""
    with session_scope(engine) as session:
        candidate = session.get(Candidate, candidate_id)
        assert candidate is not None
        return register_erasure(session, candidate, reason="consent")
