"""Activities of the privacy workflows: erase a candidate's mail everywhere, in batches and
idempotently; find what the retention rules make due; ask a candidate before forgetting."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from datetime import timedelta
from email.parser import BytesHeaderParser
from typing import Any

from sqlalchemy import Engine, delete, func, or_, update
from sqlmodel import Session, col, select
from temporalio import activity

from activities.accounts import Accounts
from activities.common import send_platform_mail
from contracts.privacy import (
    CHECKPOINT_DATABASE,
    DELETE_OLD_UNASSIGNED,
    ERASE_DUE,
    ERASE_MESSAGES,
    ERASE_OUTBOX_COPIES,
    FIND_DUE,
    FINISH_ERASURE,
    RECORD_RETENTION_CONSENT,
    SEND_RETENTION_CONSENT_ASK,
    STOP_SENDS,
    BatchResult,
    DueBatch,
    DueErasure,
    DueWork,
    ErasureRef,
    PrivacyContract,
    RetentionConsentAnswer,
    RetentionConsentAsk,
    RetentionConsentInput,
    RetentionConsentOutcome,
    StopResult,
    SweepInput,
)
from core import audit, events
from core.db import get_or_fail, session_scope
from core.deliverability import suppression
from core.events import EventType
from core.models import (
    ApplicationStatus,
    Attachment,
    AuditEvent,
    Candidate,
    CandidateAddress,
    Company,
    CompanyPrivacy,
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
    consent_deadline,
    register_erasure,
    retention_consent_mail,
    retention_consent_url,
    scrub_detail,
    their_messages,
)
from core.send import lifecycle
from core.statuses import MessageStatus
from providers.base import Outgoing

# The sweep erases a candidate itself up to this many message batches; beyond, a run of its own.
SWEEP_BATCHES_PER_CANDIDATE = 4
# An attempt started longer ago than this has ended, whatever its row says (the delivery
# activity's own timeout is two minutes).
ATTEMPT_LIMIT = timedelta(minutes=3)
# A single send not yet sent: scheduled (send later, the undo window), queued or under way.
_NOT_SENT_YET = (MessageStatus.SCHEDULED, MessageStatus.QUEUED, MessageStatus.SENDING)


class PrivacyActivities(PrivacyContract):
    def __init__(self, engine: Engine, accounts: Accounts) -> None:
        self._engine = engine
        self._accounts = accounts
        self._settings = accounts.settings
        self._batch = self._settings.erase_batch_size

    # -- erasure ---------------------------------------------------------------------------------

    def _erasure(self, session: Session, ref: ErasureRef) -> tuple[Erasure, Candidate]:
        erasure = get_or_fail(session, Erasure, ref.erasure_id)
        return erasure, get_or_fail(session, Candidate, erasure.candidate_id)

    @activity.defn(name=STOP_SENDS)
    def stop_sends(self, input: ErasureRef) -> StopResult:
        with session_scope(self._engine) as session:
            erasure, candidate = self._erasure(session, input)
            now = utcnow()
            if candidate.erasure_requested_at is None:
                candidate.erasure_requested_at = now
                session.add(candidate)
            waiting = session.exec(
                select(Message).where(
                    Message.candidate_id == candidate.id,
                    Message.direction == Direction.OUTBOUND,
                    col(Message.status).in_(_NOT_SENT_YET),
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
                    session, message, NOT_SENT_ERASED, _NOT_SENT_YET, now - ATTEMPT_LIMIT
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
                    col(Message.status).in_(_NOT_SENT_YET),
                )
            ).one()
            session.add(erasure)
            return StopResult(
                cancelled=erasure.messages_cancelled, in_flight=int(in_flight), woken=woken
            )

    @activity.defn(name=ERASE_MESSAGES)
    def erase_messages(self, input: ErasureRef) -> BatchResult:
        """One batch of the messages to or from the candidate, the Unassigned ones from their
        addresses included: content, headers, attachments, raw bytes, events' personal fields
        and audit details go; ids, statuses and times stay."""
        with session_scope(self._engine) as session:
            erasure, candidate = self._erasure(session, input)
            done = _erase_batch(session, erasure, candidate, self._batch)
            return BatchResult(done=done, more=done == self._batch)

    @activity.defn(name=ERASE_OUTBOX_COPIES)
    def erase_outbox_copies(self, input: ErasureRef) -> int:
        """The dev outbox's copies of the candidate's mail, and of the notices that told of it
        (files filed by company). Runs before the messages are erased, while the Unassigned
        ones from the candidate's addresses can still be found."""
        with Session(self._engine) as session:
            erasure, candidate = self._erasure(session, input)
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
            folder = company_folder(self._settings.outbox_dir, str(candidate.company_id))
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
        with session_scope(self._engine) as session:
            erasure = get_or_fail(session, Erasure, input.erasure_id)
            erasure.outbox_copies_deleted += deleted
            session.add(erasure)
        return deleted

    @activity.defn(name=FINISH_ERASURE)
    def finish_erasure(self, input: ErasureRef) -> None:
        with session_scope(self._engine) as session:
            erasure, candidate = self._erasure(session, input)
            if erasure.status == "done":
                return
            # A reply routed to the candidate while the batches ran.
            while _erase_batch(session, erasure, candidate, self._batch):
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
            _scrub_audit(session, candidate.company_id, [f"candidate:{candidate.id}"])
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

    @activity.defn(name=CHECKPOINT_DATABASE)
    def checkpoint_database(self, input: ErasureRef) -> None:
        """SQLite keeps old page images in its write-ahead log until the log is reset: fold it
        into the database (where secure_delete zeroed the freed space) and truncate it. That
        needs a moment without readers: tried here for a few seconds; on a busy database the
        worker's relay loop keeps trying until it succeeds (one truncation covers every erasure
        finished before it began). Never holds the erasure up for long."""
        if self._engine.dialect.name != "sqlite":
            return  # PostgreSQL: VACUUM reclaims dead rows (docs/privacy.md)
        since = time.time()  # after the erasure's last commit: its step ran before this one
        CHECKPOINTS.request(since)
        CHECKPOINTS.ensure(self._engine, since, give_up=since + CHECKPOINT_TRY_SECONDS)

    # -- retention ---------------------------------------------------------------------------------

    @activity.defn(name=FIND_DUE)
    def find_due_erasures(self, input: SweepInput) -> DueWork:
        """Closed applications past each company's `erase_after_days_closed` (or past the
        extension a candidate agreed to). With `consent_extension_days`, those within that many
        days of their date are asked first (once); their run erases them at the deadline."""
        now = utcnow()
        work = DueWork()
        with session_scope(self._engine) as session:
            rules = session.exec(
                select(CompanyPrivacy).where(
                    col(CompanyPrivacy.erase_after_days_closed).is_not(None)
                )
            ).all()
            for rule in rules:
                keep = timedelta(days=rule.erase_after_days_closed or 0)
                ask_before = timedelta(days=rule.consent_extension_days or 0)
                horizon = now - keep + ask_before  # closed before this: due, or due to be asked
                query = select(Candidate).where(
                    Candidate.company_id == rule.company_id,
                    Candidate.application_status == ApplicationStatus.CLOSED,
                    col(Candidate.closed_at) < horizon,
                    col(Candidate.erased_at).is_(None),
                    col(Candidate.erasure_requested_at).is_(None),
                    or_(
                        col(Candidate.retain_until).is_(None),
                        col(Candidate.retain_until) < now + ask_before,
                    ),
                )
                if rule.consent_extension_days:  # asked already: that question's run erases
                    query = query.where(col(Candidate.consent_asked_at).is_(None))
                candidates = session.exec(
                    query.limit(input.batch_size - len(work.erase) - len(work.ask))
                ).all()
                for candidate in candidates:
                    due_at = (candidate.closed_at or now) + keep
                    if candidate.retain_until is not None:
                        due_at = max(due_at, candidate.retain_until)
                    if not rule.consent_extension_days:
                        if due_at <= now:
                            work.erase.append(self._register(session, candidate, "retention"))
                        continue
                    if candidate.consent_asked_at is None:
                        candidate.consent_asked_at = now
                        session.add(candidate)
                        deadline = consent_deadline(candidate, rule)
                        work.ask.append(
                            RetentionConsentAsk(
                                str(candidate.id),
                                str(candidate.company_id),
                                (deadline - now).total_seconds(),
                            )
                        )
                if len(work.erase) + len(work.ask) >= input.batch_size:
                    work.more = True
                    break
        return work

    @activity.defn(name=ERASE_DUE)
    def erase_due(self, input: DueBatch) -> DueBatch:
        """The sweep's erasures without a run each: for candidates with nothing under way and
        a few hundred messages, as the retention rule finds most, a run per candidate would
        cost more than the erasure. Idempotent, as each step is."""
        needs_run = DueBatch()
        for due in input.erasures:
            ref = ErasureRef(due.erasure_id)
            if self.stop_sends(ref).in_flight:
                needs_run.erasures.append(due)
                continue
            self.erase_outbox_copies(ref)
            for _ in range(SWEEP_BATCHES_PER_CANDIDATE):
                if not self.erase_messages(ref).more:
                    self.finish_erasure(ref)
                    break
            else:
                needs_run.erasures.append(due)  # thousands of messages: its own run finishes
        if self._engine.dialect.name == "sqlite" and input.erasures:
            since = time.time()
            CHECKPOINTS.request(since)
            CHECKPOINTS.ensure(self._engine, since, give_up=0)  # else the relay, when quiet
        return needs_run

    def _register(self, session: Session, candidate: Candidate, reason: str) -> DueErasure:
        erasure = register_erasure(session, candidate, reason=reason)
        return DueErasure(str(erasure.id), str(candidate.id), str(candidate.company_id))

    @activity.defn(name=DELETE_OLD_UNASSIGNED)
    def delete_old_unassigned(self, input: SweepInput) -> BatchResult:
        """Unassigned messages older than each company's `unassigned_retention_days` (180 by
        default), with their attachments and raw bytes."""
        now = utcnow()
        with session_scope(self._engine) as session:
            limits = {
                p.company_id: p.unassigned_retention_days
                for p in session.exec(select(CompanyPrivacy)).all()
            }
            default = CompanyPrivacy.model_fields["unassigned_retention_days"].default
            oldest = now - timedelta(days=min([default, *limits.values()]))
            rows = session.exec(
                select(Message.id, Message.company_id, Message.created_at)
                .where(
                    col(Message.candidate_id).is_(None),
                    Message.direction == Direction.INBOUND,
                    col(Message.created_at) < oldest,
                )
                .limit(self._batch)
            ).all()
            ids = [
                i for i, company, created in rows
                if created < now - timedelta(days=limits.get(company, default))
            ]  # fmt: skip
            if ids:
                session.execute(delete(Attachment).where(col(Attachment.message_id).in_(ids)))
                # Events are kept a month (RECRUITMAIL_EVENT_RETENTION): few are this old.
                newest = max(created for i, _, created in rows if i in ids)
                for event in session.exec(
                    select(Event).where(
                        Event.type == EventType.MESSAGE_RECEIVED,
                        col(Event.candidate_id).is_(None),
                        col(Event.personal).is_not(None),
                        col(Event.created_at) <= newest + timedelta(days=1),
                    )
                ):
                    if event.data.get("message_id") in {str(i) for i in ids}:
                        event.personal = None
                        session.add(event)
                session.execute(delete(Message).where(col(Message.id).in_(ids)))
                # After the messages, which point at their raw bytes.
                session.execute(delete(InboundRaw).where(col(InboundRaw.message_id).in_(ids)))
            return BatchResult(done=len(ids), more=len(rows) == self._batch)

    @activity.defn(name=SEND_RETENTION_CONSENT_ASK)
    async def send_retention_consent_ask(self, input: RetentionConsentInput) -> None:
        mail = await asyncio.to_thread(self._retention_consent_mail, input)
        if mail is None:
            return  # erased or answered meanwhile
        await send_platform_mail(self._accounts, [mail])

    def _retention_consent_mail(self, input: RetentionConsentInput) -> Outgoing | None:
        with Session(self._engine) as session:
            candidate = session.get(Candidate, uuid.UUID(input.candidate_id))
            if candidate is None or candidate.erased_at or not candidate.email:
                return None
            company = get_or_fail(session, Company, candidate.company_id)
            deadline = utcnow() + input.answer_wait
            return Outgoing.of(
                retention_consent_mail(
                    self._settings,
                    company=company,
                    candidate=candidate,
                    link=retention_consent_url(self._settings, candidate.id, input.answer_wait),
                    deadline=deadline,
                ),
                "retention-consent",
                str(company.id),
            )

    @activity.defn(name=RECORD_RETENTION_CONSENT)
    def record_retention_consent(self, input: RetentionConsentAnswer) -> RetentionConsentOutcome:
        with session_scope(self._engine) as session:
            candidate = get_or_fail(session, Candidate, input.candidate_id)
            now = utcnow()
            audit.record(
                session,
                company_id=candidate.company_id,
                user_id=None,
                action="candidate.retention_answer",
                target=f"candidate:{candidate.id}",
                answer=input.answer,
            )
            if input.answer == "keep":
                privacy = session.get(CompanyPrivacy, candidate.company_id)
                period = timedelta(days=(privacy.erase_after_days_closed if privacy else 0) or 0)
                candidate.retain_until = now + period
                candidate.consent_asked_at = None  # asked again before the new date
                session.add(candidate)
                return RetentionConsentOutcome()
            if candidate.erased_at is not None:
                return RetentionConsentOutcome()
            privacy = session.get(CompanyPrivacy, candidate.company_id)
            rule_off = privacy is None or privacy.erase_after_days_closed is None
            reopened = candidate.application_status != ApplicationStatus.CLOSED
            if input.answer == "none" and (rule_off or reopened):
                # No answer, but the rule no longer erases them: nothing to do until it does.
                candidate.consent_asked_at = None
                session.add(candidate)
                return RetentionConsentOutcome()
            erasure = register_erasure(
                session, candidate, reason="consent" if input.answer == "delete" else "retention"
            )
            return RetentionConsentOutcome(
                DueErasure(str(erasure.id), str(candidate.id), str(candidate.company_id))
            )

    @property
    def all(self) -> list:
        return [
            self.stop_sends,
            self.erase_messages,
            self.erase_outbox_copies,
            self.finish_erasure,
            self.checkpoint_database,
            self.find_due_erasures,
            self.erase_due,
            self.delete_old_unassigned,
            self.send_retention_consent_ask,
            self.record_retention_consent,
        ]


def _erase_batch(session: Session, erasure: Erasure, candidate: Candidate, limit: int) -> int:
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
        _erase_content(message, now)
        session.add(message)
    if ids:
        erasure.attachments_deleted += session.execute(
            delete(Attachment).where(col(Attachment.message_id).in_(ids))
        ).rowcount  # type: ignore[attr-defined]
        erasure.raw_messages_erased += session.execute(
            update(InboundRaw)
            .where(col(InboundRaw.message_id).in_(ids))
            .values(raw=b"", sha256="", mail_from="")
        ).rowcount  # type: ignore[attr-defined]
        unassigned = {str(m.id) for m in batch if m.candidate_id is None}
        _forget_in_events(session, candidate, unassigned)
        _scrub_audit(session, candidate.company_id, [f"message:{i}" for i in ids])
    erasure.messages_erased += len(ids)
    session.add(erasure)
    return len(ids)


def _erase_content(message: Message, now: Any) -> None:
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


def _forget_in_events(session: Session, candidate: Candidate, unassigned: set[str]) -> None:
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


def _scrub_audit(session: Session, company_id: uuid.UUID, targets: list[str]) -> None:
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
