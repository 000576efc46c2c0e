"""Erasing a candidate: the steps, each idempotent and done in batches, that stop what was
not sent yet, erase the content of every message to or from them (their Unassigned ones
included), their dev-outbox copies, and finally their name and address; ids, statuses and
times stay. And SQLite's write-ahead log truncated after, so no old page keeps what was
erased. activities/privacy.py runs each step in its own transaction."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import timedelta
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, delete, func, or_, update
from sqlmodel import Session, col, select

from core import attachments as files_at_rest
from core import audit, events
from core.deliverability import suppression
from core.events import EventType
from core.models import (
    Attachment,
    AuditEvent,
    Candidate,
    CandidateAddress,
    Direction,
    Erasure,
    Event,
    InboundRaw,
    Message,
    WebhookAttempt,
    utcnow,
)
from core.notify import ABOUT_HEADER
from core.outbox import company_folder
from core.privacy import (
    ERASED_NAME,
    NOT_SENT_ERASED,
    candidate_addresses,
    scrub_detail,
    their_messages,
)
from core.send import lifecycle
from core.settings import Settings
from core.statuses import MessageStatus

# An attempt started longer ago than this has ended, whatever its row says (the delivery
# activity's own timeout is two minutes).
ATTEMPT_LIMIT = timedelta(minutes=3)
# A single send not yet sent: scheduled (send later, the undo window), queued or under way.
NOT_SENT_YET = (MessageStatus.SCHEDULED, MessageStatus.QUEUED, MessageStatus.SENDING)


def stop_sends(
    session: Session, erasure: Erasure, candidate: Candidate
) -> tuple[int, int, list[str]]:
    """The candidate is marked as being erased (no new send starts), and what was not sent yet
    is cancelled, except an attempt under way (its message stays: the erasure waits for it).
    Returns how many were cancelled, how many are still in flight, and the runs of the
    scheduled ones (woken, so they end now rather than at their time)."""
    now = utcnow()
    if candidate.erasure_requested_at is None:
        candidate.erasure_requested_at = now
        session.add(candidate)
    waiting = session.exec(
        select(Message).where(
            Message.candidate_id == candidate.id,
            Message.direction == Direction.OUTBOUND,
            col(Message.status).in_(NOT_SENT_YET),
            or_(
                col(Message.attempt_started_at).is_(None),
                col(Message.attempt_started_at) < now - ATTEMPT_LIMIT,
            ),
        )
    ).all()
    woken = []
    for message in waiting:
        was_scheduled = message.status == MessageStatus.SCHEDULED
        # One conditional UPDATE: an attempt that began meanwhile keeps its message.
        if lifecycle.cancel_unsent(
            session, message, NOT_SENT_ERASED, NOT_SENT_YET, now - ATTEMPT_LIMIT
        ):
            erasure.messages_cancelled += 1
            if was_scheduled:
                woken.append(message.run_id)
    in_flight = session.exec(
        select(func.count())
        .select_from(Message)
        .where(
            Message.candidate_id == candidate.id,
            Message.direction == Direction.OUTBOUND,
            col(Message.status).in_(NOT_SENT_YET),
        )
    ).one()
    session.add(erasure)
    return erasure.messages_cancelled, int(in_flight), woken


def outbox_targets(
    settings: Settings, session: Session, candidate: Candidate
) -> tuple[Path, set[str], set[str], set[str]]:
    """What identifies the dev outbox's copies of the candidate's mail, and of the notices that
    told of it: the company's folder, the Message-IDs, the addresses, and the ids a notice
    names. Read before the messages are erased, while the Unassigned ones from the
    candidate's addresses can still be found."""
    addresses = candidate_addresses(session, candidate)
    rows = [
        row
        for condition in their_messages(candidate, addresses)
        for row in session.exec(
            select(Message.id, Message.message_id_header).where(condition)
        ).all()
    ]
    ours = {" ".join(header.split()) for _, header in rows}
    about = {str(candidate.id), *(str(i) for i, _ in rows)}
    folder = company_folder(settings.outbox_dir, str(candidate.company_id))
    return folder, ours, addresses, about


def delete_copies(folder: Path, ours: set[str], addresses: set[str], about: set[str]) -> int:
    """Delete those copies (files filed by company); how many."""
    deleted = 0
    for path in folder.glob("*.json") if folder.exists() else []:
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        header = BytesHeaderParser().parsebytes(str(record.get("raw", "")).encode())
        message_id = " ".join(str(header.get("Message-ID", "")).split())
        recipients = {str(r).lower() for r in record.get("rcpt_tos", [])}
        # Notices and retention questions name the candidate and messages they tell of.
        told = set(str(header.get(ABOUT_HEADER, "")).split())
        if message_id in ours or recipients & addresses or told & about:
            path.unlink(missing_ok=True)
            deleted += 1
    return deleted


def finish(session: Session, erasure: Erasure, candidate: Candidate, batch: int) -> None:
    """The last step: what was routed to the candidate meanwhile, their addresses, name and
    email, their events' personal fields and audit details; candidate.erased and the audit
    line with the counts."""
    if erasure.status == "done":
        return
    # A reply routed to the candidate while the batches ran.
    while erase_batch(session, erasure, candidate, batch):
        pass
    now = utcnow()
    session.execute(
        delete(CandidateAddress).where(col(CandidateAddress.candidate_id) == candidate.id)
    )
    # Still not mailed if it was suppressed: the list keeps the address's hash only.
    suppression.forget_address(session, candidate.company_id, candidate.email)
    candidate.name = ERASED_NAME
    candidate.email = ""
    candidate.email_bounce_detail = None
    candidate.erased_at = candidate.erased_at or now
    candidate.updated_at = now
    session.add(candidate)
    session.execute(
        update(Event).where(col(Event.candidate_id) == candidate.id).values(personal=None)
    )
    scrub_audit(session, candidate.company_id, [f"candidate:{candidate.id}"])
    erasure.status = "done"
    erasure.finished_at = now
    session.add(erasure)
    counts = {
        "messages_cancelled": erasure.messages_cancelled,
        "messages_erased": erasure.messages_erased,
        "attachments_deleted": erasure.attachments_deleted,
        "raw_messages_erased": erasure.raw_messages_erased,
        "outbox_copies_deleted": erasure.outbox_copies_deleted,
    }
    audit.record(
        session,
        company_id=candidate.company_id,
        user_id=erasure.requested_by_user_id,
        action="candidate.erase",
        target=f"candidate:{candidate.id}",
        erasure_id=str(erasure.id),
        reason=erasure.reason,
        **counts,
    )
    events.emit(
        session,
        candidate.company_id,
        EventType.CANDIDATE_ERASED,
        {
            "candidate_id": str(candidate.id),
            "erasure_id": str(erasure.id),
            "reason": erasure.reason,
            **counts,
        },
    )


def erase_batch(session: Session, erasure: Erasure, candidate: Candidate, limit: int) -> int:
    """Erase up to `limit` of the candidate's messages not erased yet; how many."""
    batch: list[Message] = []
    for condition in their_messages(candidate, candidate_addresses(session, candidate)):
        if len(batch) < limit:
            batch += session.exec(
                select(Message)
                .where(condition, col(Message.erased_at).is_(None))
                .limit(limit - len(batch))
            ).all()
    ids = [m.id for m in batch]
    now = utcnow()
    for message in batch:
        erase_content(message, now)
        session.add(message)
    if ids:
        erasure.attachments_deleted += files_at_rest.delete_attachments(
            session, col(Attachment.message_id).in_(ids)
        )
        erasure.raw_messages_erased += session.execute(
            update(InboundRaw)
            .where(col(InboundRaw.message_id).in_(ids))
            .values(raw=b"", sha256="", mail_from="")
        ).rowcount  # type: ignore[attr-defined]
        unassigned = {str(m.id) for m in batch if m.candidate_id is None}
        forget_in_events(session, candidate, unassigned)
        scrub_audit(session, candidate.company_id, [f"message:{i}" for i in ids])
    erasure.messages_erased += len(ids)
    session.add(erasure)
    return len(ids)


def erase_content(message: Message, now: Any) -> None:
    message.subject = ""
    message.text = ""
    message.html = None
    message.reply_text = message.quoted_text = message.signature = message.reply_html = None
    message.segments = None
    message.invitation = None  # its place and description may name the candidate
    message.html_safe = message.reply_html_safe = message.html_note = None
    message.raw_mime = None
    message.in_reply_to = None
    message.references = None
    message.match_detail = "erased with the candidate's data"
    message.to_addresses = []
    message.forwarded_from = None
    message.forwarded_from_name = None
    message.error = events.scrub(message.error)
    if message.direction == Direction.INBOUND:
        # The candidate's own address and name, and their mail client's Message-ID (some
        # carry the address); the id stays unique.
        message.from_address = ""
        message.from_name = ""
        message.message_id_header = f"<erased-{message.id.hex}@erased.invalid>"
    message.erased_at = now
    message.updated_at = now


def forget_in_events(session: Session, candidate: Candidate, unassigned: set[str]) -> None:
    """The personal fields of the candidate's events, and of the events about these Unassigned
    messages of theirs (which carry no candidate id: only `message.received` names them); and
    what endpoints answered to those events (an endpoint may echo what it was sent)."""
    session.execute(
        update(Event).where(col(Event.candidate_id) == candidate.id).values(personal=None)
    )
    theirs = select(Event.id).where(col(Event.candidate_id) == candidate.id)
    session.execute(
        update(WebhookAttempt)
        .where(col(WebhookAttempt.event_id).in_(theirs))
        .values(response_body="")
    )
    if not unassigned:
        return
    for event in session.exec(
        select(Event).where(
            Event.company_id == candidate.company_id,
            Event.type == EventType.MESSAGE_RECEIVED,
            col(Event.candidate_id).is_(None),
        )
    ):
        if event.data.get("message_id") in unassigned:
            event.personal = None
            session.add(event)
            session.execute(
                update(WebhookAttempt)
                .where(col(WebhookAttempt.event_id) == event.id)
                .values(response_body="")
            )


def scrub_audit(session: Session, company_id: uuid.UUID, targets: list[str]) -> None:
    """Audit lines keep who did what and when; addresses in their details are masked."""
    for event in session.exec(
        select(AuditEvent).where(
            AuditEvent.company_id == company_id, col(AuditEvent.target).in_(targets)
        )
    ):
        event.detail = scrub_detail(event.detail)
        session.add(event)


class Checkpoints:
    """SQLite write-ahead log truncations, one at a time in this process, each holding back
    writers for at most `WAIT_MS` (not the connections' 30 s busy timeout)."""

    WAIT_MS = 250

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ok = 0.0  # when the last successful truncation began (epoch seconds)
        self._wanted = 0.0  # the latest erasure that asked for one

    def request(self, since: float) -> None:
        self._wanted = max(self._wanted, since)

    @property
    def pending(self) -> bool:
        return self._wanted > 0 and self._wanted >= self._last_ok

    def ensure(self, engine: Engine, since: float, give_up: float) -> bool:
        """True once a truncation that began after `since` has succeeded."""
        while True:
            if self._last_ok > since:
                return True
            if self._lock.acquire(timeout=0.5):
                try:
                    if self._last_ok > since:
                        return True
                    began = time.time()
                    if _truncate(engine, self.WAIT_MS):
                        self._last_ok = began
                        return True
                finally:
                    self._lock.release()
            if time.time() >= give_up:
                return False
            time.sleep(0.1)

    def flush(self, engine: Engine) -> bool:
        """One try at the truncation an erasure still waits for (the relay loop calls this)."""
        if not self.pending:
            return True
        return self.ensure(engine, self._wanted, give_up=0)


def _truncate(engine: Engine, wait_ms: int) -> bool:
    with engine.connect() as connection:
        connection.exec_driver_sql(f"PRAGMA busy_timeout = {int(wait_ms)}")
        try:
            busy = connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            connection.exec_driver_sql("PRAGMA busy_timeout = 30000")
    return not (busy and busy[0])


# This process's truncations; the relay loop (worker/relay.py) finishes what erasures left.
CHECKPOINTS = Checkpoints()
# How long an erasure's last step tries to truncate the log itself.
CHECKPOINT_TRY_SECONDS = 3.0
