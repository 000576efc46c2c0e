"""Activities of BulkSend: plan the batches, send one batch over one connection, finish.

The invariant that keeps a crash from losing or doubling mail: each message is marked
`sending` in the database before its send and `sent` after it, in the same transaction that
marks the next one `sending`. A batch retried after a crash resends only what is not `sent`,
so the only possible duplicate is the one message whose send was under way.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import Engine, bindparam, delete, func, insert, update
from sqlalchemy import select as core_select
from sqlmodel import Session, col, select
from temporalio import activity

from activities.common import to_application_error
from activities.send import SendActivities, SenderReplaced
from contracts.bulk import (
    FAIL_BULK_BATCH,
    FINISH_BULK_SEND,
    PLAN_BULK_SEND,
    SEND_BULK_BATCH,
    BatchInput,
    BatchResult,
    BulkContract,
    FailBatchInput,
    FinishInput,
    PlanInput,
)
from core import attachments as files_at_rest
from core import bulk, events, throttle
from core.db import get_or_fail, session_scope
from core.deliverability import suppression, unsubscribe
from core.errors import (
    AuthExpiredError,
    ConfigurationError,
    MailError,
    PermanentMailError,
    QuotaExceeded,
    RecipientDeferred,
    TransientMailError,
    for_recruiter,
)
from core.events import EventType
from core.group_commit import GroupCommit, in_thread
from core.inbound import tokens
from core.mail import bulk_boundary, compose_bytes, file_parts, splice
from core.models import (
    BulkFile,
    BulkJob,
    Candidate,
    Company,
    Event,
    Message,
    SenderNameMode,
    User,
    table_of,
    utcnow,
)
from core.senders import EffectiveSender, effective_sender
from core.settings import Settings
from core.statuses import BulkJobStatus, MessageStatus, SuppressionReason
from providers.base import MailSession, Outgoing

_PENDING = (MessageStatus.QUEUED.value, MessageStatus.SENDING.value)
_MESSAGE = table_of(Message)
_EVENT = table_of(Event)
# The next message's `sending`, unless it was cancelled meanwhile (an erasure); the attempt is
# under way from then on, so an erasure of its candidate waits for it to end.
_TO_SENDING = (
    update(_MESSAGE)
    .where(_MESSAGE.c.id == bindparam("target_id"), _MESSAGE.c.status.in_(_PENDING))
    .values(
        status=MessageStatus.SENDING,
        updated_at=bindparam("now"),
        attempt_started_at=bindparam("now"),
    )
)
# The sent, failed or put-off message, by primary key: one executemany for the outcomes of a
# commit. A put-off message is `queued` again with its next try; the first put-off is kept.
_TO_OUTCOME = (
    update(_MESSAGE)
    .where(_MESSAGE.c.id == bindparam("target_id"))
    .values(
        status=bindparam("status"),
        updated_at=bindparam("now"),
        attempts=_MESSAGE.c.attempts + 1,
        attempt_started_at=None,
        sent_at=bindparam("sent_at"),
        provider_message_id=bindparam("provider_id"),
        error=bindparam("error"),
        next_attempt_at=bindparam("next_at"),
        deferred_since=func.coalesce(_MESSAGE.c.deferred_since, bindparam("since")),
    )
)
# The next messages' `sending`, as _TO_SENDING, telling which moved.
_TO_SENDING_MANY = (
    update(_MESSAGE)
    .where(
        _MESSAGE.c.id.in_(bindparam("target_ids", expanding=True)),
        _MESSAGE.c.status.in_(_PENDING),
    )
    .values(
        status=MessageStatus.SENDING,
        updated_at=bindparam("now"),
        attempt_started_at=bindparam("now"),
    )
    .returning(_MESSAGE.c.id)
)
# Waits up to this long inside the batch; a longer one goes back to the workflow's timer.
MAX_INLINE_WAIT = 60.0
# A message whose send keeps failing transiently inside one attempt of the batch: the batch
# attempt fails and Temporal retries it later (skipping what was sent).
MAX_TRANSIENT_TRIES = 4
# A heartbeat costs an encode and a call into the SDK's core: one a second is plenty (the
# timeout is 30 s by default), and progress is in the database anyway.
HEARTBEAT_EVERY = 1.0


class _Pending(NamedTuple):
    """A message of the batch still to send, with its stored MIME and envelope."""

    id: uuid.UUID
    raw: bytes
    transport: str
    connection_id: uuid.UUID | None
    envelope_from: str
    envelope_to: list[str]
    company_id: str
    # For the message's event: whose it is, and what an opted-in endpoint may see.
    candidate_id: uuid.UUID | None = None
    candidate_name: str | None = None
    subject: str = ""
    bulk_job_id: uuid.UUID | None = None
    attempts: int = 0
    deferred_since: datetime | None = None
    # The job's files as MIME parts, added to `raw` as it is sent (core/mail.splice).
    parts: bytes = b""


class BatchOutcome(NamedTuple):
    """A sent, failed or put-off message of a batch, and the batch's next message to mark
    `sending`. A put-off one (`queued`) has its next try."""

    message: _Pending
    status: str
    detail: str
    next_id: uuid.UUID | None
    retry_at: datetime | None = None


DEFERRED = "deferred"  # what _deliver answers for a message its recipient's server put off


@dataclass
class _Mailbox:
    """Where a batch sends: one sender (a reused session), and that mailbox's throttle."""

    job_id: uuid.UUID
    connection_id: uuid.UUID | None
    session: MailSession
    rate: throttle.Rate

    @property
    def key(self) -> str:
        return f"connection:{self.connection_id}" if self.connection_id else "platform"


class BulkActivities(BulkContract):
    def __init__(self, engine: Engine, settings: Settings, send: SendActivities) -> None:
        self._engine = engine
        self._settings = settings
        self._send = send
        self._outcomes = GroupCommit(in_thread(self._advance_many))
        self._files_cache: tuple[uuid.UUID, bytes] | None = None

    # -- planning -----------------------------------------------------------------------

    @activity.defn(name=PLAN_BULK_SEND)
    def plan_bulk_send(self, input: PlanInput) -> int:
        """Resolve each recipient's sender, compose every MIME once, number the batches."""
        with session_scope(self._engine) as session:
            job = get_or_fail(session, BulkJob, input.job_id)
            if job.batches:
                return job.batches  # planned by an earlier attempt that committed
            company = get_or_fail(session, Company, job.company_id)
            sender_name = company.name
            # The template's sender name, or the company's.
            mode = job.sender_name_mode or company.sender_name_mode
            if mode == SenderNameMode.EMPLOYEE and job.created_by_user_id:
                creator = session.get(User, job.created_by_user_id)
                sender_name = creator.name if creator else sender_name
            rows = session.execute(
                core_select(
                    col(Message.id),
                    col(Message.subject),
                    col(Message.text),
                    col(Message.html),
                    col(Message.message_id_header),
                    col(Message.created_at),
                    col(Candidate.name),
                    col(Candidate.email),
                    col(Candidate.legal_entity_id),
                    col(Candidate.id).label("candidate_id"),
                )
                .join(Candidate, col(Message.candidate_id) == col(Candidate.id))
                .where(col(Message.bulk_job_id) == job.id)
                .order_by(col(Message.created_at), col(Message.id))
            ).all()
            rows = self._skip_suppressed(session, job, rows)
            senders: dict[uuid.UUID | None, tuple[EffectiveSender, bool]] = {}
            groups: dict[tuple[str, uuid.UUID | None], list[dict]] = defaultdict(list)
            conversations = tokens.conversations_of(
                session, company.id, [row.candidate_id for row in rows]
            )
            key = self._send.box.signing_keys()[0]
            hosted = self._settings.hosted_address(company.slug)
            for row in rows:
                entity = row.legal_entity_id
                if entity not in senders:
                    found = effective_sender(session, self._settings, company, entity)
                    senders[entity] = found, tokens.carries_token(session, found.connection_id)
                sender, carries = senders[entity]
                reply_to = (
                    tokens.reply_address(
                        hosted, tokens.token(key, conversations[row.candidate_id], company.id)
                    )
                    if carries
                    else None
                )
                composed = compose_bytes(
                    files_boundary=bulk_boundary(job.id) if job.files else None,
                    from_address=sender.address,
                    from_name=sender_name,
                    to_address=row.email,
                    # Imported names may hold line breaks; a header must not.
                    to_name=" ".join(row.name.split()),
                    subject=row.subject,
                    text=row.text,
                    html=row.html,
                    message_id=row.message_id_header,
                    date=row.created_at,
                    reply_to=reply_to,
                    extra_headers=unsubscribe.headers_for(
                        self._send.box,
                        self._settings.public_url,
                        hosted,
                        company.id,
                        row.candidate_id,
                    )
                    if job.unsubscribe
                    else None,
                )
                groups[(sender.transport, sender.connection_id)].append(
                    {
                        "id": row.id,
                        "raw_mime": composed.mime,
                        "from_address": sender.address,
                        "from_name": sender_name,
                        "to_addresses": composed.envelope_to,
                        "transport": sender.transport,
                        "connection_id": sender.connection_id,
                    }
                )
            updates = []
            batch = 0
            for members in groups.values():
                for start in range(0, len(members), input.batch_size):
                    for values in members[start : start + input.batch_size]:
                        updates.append({**values, "bulk_batch": batch})
                    batch += 1
            if updates:
                session.execute(update(Message), updates)  # one executemany, by primary key
            job.batches = batch
            job.status = BulkJobStatus.RUNNING
            session.add(job)
            return batch

    def _skip_suppressed(self, session: Session, job: BulkJob, rows: Sequence[Any]) -> list:
        """The recipients to plan: a recipient on the suppression list is `skipped` with the
        reason (and a message.skipped event), counted in the job's progress, never sent."""
        found = suppression.listed(session, job.company_id, [row.email for row in rows])
        if not found:
            return list(rows)
        now = utcnow()
        kept, skipped = [], []
        for row in rows:
            listed = found.get(suppression.normalized(row.email))
            # A transactional bulk send (no unsubscribe link) still goes to who opted out.
            opt_out_only = listed is not None and listed.reason == SuppressionReason.UNSUBSCRIBED
            if listed is None or (opt_out_only and not job.unsubscribe):
                kept.append(row)
                continue
            reason = suppression.explain(listed)
            skipped.append(
                {
                    "id": row.id,
                    "status": MessageStatus.SKIPPED.value,
                    "error": reason,
                    "updated_at": now,
                }
            )
            events.emit(
                session,
                job.company_id,
                EventType.MESSAGE_SKIPPED,
                events.message_data(
                    row.id,
                    row.candidate_id,
                    MessageStatus.SKIPPED.value,
                    reason=reason,
                    bulk_job_id=job.id,
                ),
                candidate_id=row.candidate_id,
            )
        session.execute(update(Message), skipped)  # one executemany, by primary key
        return kept

    # -- one batch ----------------------------------------------------------------------

    @activity.defn(name=SEND_BULK_BATCH)
    async def send_bulk_batch(self, input: BatchInput) -> BatchResult:
        job_id = uuid.UUID(input.job_id)
        cancelled, pending, later = await asyncio.to_thread(self._load_batch, job_id, input.batch)
        result = BatchResult()
        if cancelled or not pending:
            result.cancelled = cancelled
            result.resume_at = None if cancelled else later
            return result
        # A batch has one sender: planning grouped it by transport and connection.
        transport_name, connection_id = pending[0].transport, pending[0].connection_id
        try:
            try:
                provider, account = await asyncio.to_thread(
                    self._send.sender_for, transport_name, connection_id
                )
            except SenderReplaced:
                # The scope switched since planning: the batch goes out from the sender in
                # effect now, each message composed again (same Message-ID).
                for message in pending:
                    await asyncio.to_thread(self._send.recompose, str(message.id))
                cancelled, pending, later = await asyncio.to_thread(
                    self._load_batch, job_id, input.batch
                )
                transport_name, connection_id = pending[0].transport, pending[0].connection_id
                provider, account = await asyncio.to_thread(
                    self._send.sender_for, transport_name, connection_id
                )
        except MailError as err:
            raise await self._batch_error(err, connection_id) from err
        mailbox = _Mailbox(
            job_id=job_id,
            connection_id=connection_id,
            session=provider.session(account),
            rate=await asyncio.to_thread(self._send.rate_for, provider, connection_id),
        )
        if mailbox.rate.limited:
            await asyncio.to_thread(throttle.ensure_row, self._engine, mailbox.key)
        last_check = last_beat = time.monotonic()
        try:
            ready = await asyncio.to_thread(self._mark_sending, pending[0].id)
            for index, message in enumerate(pending):
                next_id = pending[index + 1].id if index + 1 < len(pending) else None
                if not ready:  # cancelled since the batch was loaded: its candidate's erasure
                    ready = bool(next_id) and await asyncio.to_thread(self._mark_sending, next_id)
                    continue
                if time.monotonic() - last_check > 1.0:
                    last_check = time.monotonic()
                    if await asyncio.to_thread(self._cancel_requested, job_id):
                        await asyncio.to_thread(self._requeue, message.id)
                        result.cancelled = True
                        return result
                outcome = await self._deliver(mailbox, message, index)
                if outcome is None:  # cancelled while it waited for its slot
                    ready = bool(next_id) and await asyncio.to_thread(self._mark_sending, next_id)
                    continue
                if isinstance(outcome, float):  # the mailbox's next slot is far off
                    await asyncio.to_thread(self._requeue, message.id)
                    result.resume_at = outcome
                    return result
                written = self._outcome(message, *outcome, next_id)
                ready = await self._outcomes.write(written)
                if written.status == MessageStatus.SENT:
                    result.sent += 1
                elif written.status == MessageStatus.FAILED:
                    result.failed += 1
                elif written.retry_at is not None:  # put off: the batch comes back for it
                    later = min(later or math.inf, written.retry_at.timestamp())
                if time.monotonic() - last_beat > HEARTBEAT_EVERY:
                    last_beat = time.monotonic()
                    activity.heartbeat(index + 1)
        finally:
            await mailbox.session.close()
        await asyncio.to_thread(self._clear_next_send, job_id)
        result.resume_at = later
        return result

    def _outcome(
        self, message: _Pending, status: str, detail: str, next_id: uuid.UUID | None
    ) -> BatchOutcome:
        """A sent or failed message as it is; one its recipient's server put off is tried again
        on its own backoff (core/bulk.py), or fails once its retries run out."""
        if status != DEFERRED:
            return BatchOutcome(message, status, detail, next_id)
        settings = self._settings
        deferral = bulk.defer(
            detail,
            attempts=message.attempts + 1,
            since=message.deferred_since,
            now=utcnow(),
            initial=settings.send_retry_initial_interval,
            maximum=settings.send_retry_max_interval,
            total=settings.send_retry_total,
        )
        if deferral.retry_at is None:
            return BatchOutcome(message, MessageStatus.FAILED, deferral.reason, next_id)
        return BatchOutcome(
            message, MessageStatus.QUEUED, deferral.reason, next_id, deferral.retry_at
        )

    async def _deliver(
        self, mailbox: _Mailbox, message: _Pending, index: int
    ) -> tuple[str, str] | float | None:
        """Send one message: ("sent", provider id), ("failed", reason), a far-off slot, or None
        when it was cancelled while it waited for its slot (its candidate's erasure)."""
        mail = Outgoing(
            splice(message.raw, message.parts),
            message.envelope_from,
            message.envelope_to,
            str(message.id),
            message.company_id,
        )
        tries = 0
        while True:
            if mailbox.rate.limited:
                reserved = await asyncio.to_thread(
                    throttle.reserve,
                    self._engine,
                    mailbox.key,
                    mailbox.rate,
                    None,
                    len(message.envelope_to),
                )
                slot = reserved.at
                wait = slot - time.time()
                if wait > MAX_INLINE_WAIT:
                    await asyncio.to_thread(self._set_next_send, mailbox.job_id, reserved)
                    return slot
                if wait > 0:
                    if wait > 1:
                        await asyncio.to_thread(self._set_next_send, mailbox.job_id, reserved)
                    # Waiting is not sending: an erasure may cancel the message meanwhile.
                    await asyncio.to_thread(self._attempt_paused, message.id, True)
                    await _sleep_heartbeating(wait, index)
                    if not await asyncio.to_thread(self._attempt_paused, message.id, False):
                        return None
            try:
                provider_id = await mailbox.session.send(mail)
                return MessageStatus.SENT, provider_id
            except (AuthExpiredError, ConfigurationError) as err:
                raise await self._batch_error(err, mailbox.connection_id) from err
            except PermanentMailError as err:
                return MessageStatus.FAILED, for_recruiter(err)
            except RecipientDeferred as err:
                # This recipient only (greylisting, a full mailbox): the others go on now, over
                # the same session, and this one is tried again on its own backoff.
                return DEFERRED, str(err)
            except TransientMailError as err:
                tries += 1
                if tries >= MAX_TRANSIENT_TRIES:
                    raise to_application_error(err) from None
                pause = err.retry_after.total_seconds() if err.retry_after else 0.5 * tries
                if err.retry_after is not None:
                    await asyncio.to_thread(throttle.hold_back, self._engine, mailbox.key, pause)
                if pause > MAX_INLINE_WAIT:
                    # The job says until when, and why (the mailbox's quota, or throttling).
                    until = throttle.Slot(time.time() + pause, isinstance(err, QuotaExceeded))
                    await asyncio.to_thread(self._set_next_send, mailbox.job_id, until)
                    return until.at
                await _sleep_heartbeating(pause, index)

    async def _batch_error(self, err: MailError, connection_id: uuid.UUID | None):
        if isinstance(err, AuthExpiredError) and connection_id is not None:
            err = await asyncio.to_thread(self._send.mark_needs_reauth, connection_id, err)
        return to_application_error(err)

    # -- database steps -----------------------------------------------------------------

    def _load_batch(
        self, job_id: uuid.UUID, batch: int
    ) -> tuple[bool, list[_Pending], float | None]:
        """Whether the job was cancelled; the batch's messages due now; and when the earliest
        of those put off is due (epoch seconds), if any."""
        with Session(self._engine) as session:
            job = get_or_fail(session, BulkJob, job_id)
            rows = session.execute(
                core_select(
                    col(Message.id),
                    col(Message.raw_mime),
                    col(Message.transport),
                    col(Message.connection_id),
                    col(Message.from_address),
                    col(Message.to_addresses),
                    col(Message.candidate_id),
                    col(Candidate.name),
                    col(Message.subject),
                    col(Message.attempts),
                    col(Message.deferred_since),
                    col(Message.next_attempt_at),
                )
                .outerjoin(Candidate, col(Candidate.id) == col(Message.candidate_id))
                .where(
                    col(Message.bulk_job_id) == job_id,
                    col(Message.bulk_batch) == batch,
                    col(Message.status).in_(_PENDING),
                )
                .order_by(col(Message.created_at), col(Message.id))
            ).all()
        company_id = str(job.company_id)
        parts = self._parts(job) if job.files else b""
        now = utcnow()
        pending, later = [], None
        for row in rows:
            if row.next_attempt_at is not None and row.next_attempt_at > now:
                at = row.next_attempt_at.timestamp()
                later = at if later is None else min(later, at)
                continue
            pending.append(
                _Pending(
                    row.id,
                    row.raw_mime,
                    row.transport or "platform",
                    row.connection_id,
                    row.from_address,
                    list(row.to_addresses),
                    company_id,
                    row.candidate_id,
                    row.name,
                    row.subject,
                    job_id,
                    row.attempts,
                    row.deferred_since,
                    parts,
                )
            )
        return job.cancel_requested, pending, later

    def _parts(self, job: BulkJob) -> bytes:
        """The job's files as MIME parts, made once per job in this worker (the last job's
        kept: a job's batches come one after another)."""
        cached = self._files_cache
        if cached is not None and cached[0] == job.id:
            return cached[1]
        with Session(self._engine) as session:
            files = session.exec(
                select(BulkFile).where(BulkFile.job_id == job.id).order_by(col(BulkFile.position))
            ).all()
            box = self._send.box
            parts = file_parts(
                bulk_boundary(job.id),
                [
                    (
                        f.filename,
                        f.content_type,
                        files_at_rest.opened(box, f.id, f.content, f.sealed),
                    )
                    for f in files
                ],
            )
        self._files_cache = (job.id, parts)
        return parts

    def _cancel_requested(self, job_id: uuid.UUID) -> bool:
        with Session(self._engine) as session:
            return bool(
                session.exec(select(BulkJob.cancel_requested).where(BulkJob.id == job_id)).one()
            )

    def _mark_sending(self, message_id: uuid.UUID | None) -> bool:
        """True when the message is now `sending` (it was not cancelled meanwhile)."""
        with self._engine.begin() as connection:
            moved = connection.execute(_TO_SENDING, {"target_id": message_id, "now": utcnow()})
            return moved.rowcount == 1

    def _attempt_paused(self, message_id: uuid.UUID, paused: bool) -> bool:
        """Mark the attempt of a `sending` message paused (waiting for its slot) or under way
        again; False when it is no longer `sending` (cancelled meanwhile)."""
        with self._engine.begin() as connection:
            moved = connection.execute(
                update(_MESSAGE)
                .where(_MESSAGE.c.id == message_id, _MESSAGE.c.status == MessageStatus.SENDING)
                .values(attempt_started_at=None if paused else utcnow())
            )
            return moved.rowcount == 1

    def _requeue(self, message_id: uuid.UUID) -> None:
        with self._engine.begin() as connection:
            connection.execute(
                update(_MESSAGE)
                .where(_MESSAGE.c.id == message_id, _MESSAGE.c.status == MessageStatus.SENDING)
                .values(status=MessageStatus.QUEUED, updated_at=utcnow(), attempt_started_at=None)
            )

    def _advance_many(self, outcomes: list[BatchOutcome]) -> list[bool]:
        """Messages' outcomes, their events, and the next ones' `sending`, in one transaction;
        for each, whether its batch's next message is now `sending` (not cancelled meanwhile).

        The outcomes come from the batches running at once, each waiting for its own: a
        batch still sends its next message only after its last one's outcome is committed.
        SQLAlchemy Core, not the ORM: this runs once per message, on the hot path.
        """
        now = utcnow()
        results = []
        event_rows = []
        for outcome in outcomes:
            message, sent = outcome.message, outcome.status == MessageStatus.SENT
            results.append(
                {
                    "target_id": message.id,
                    "status": outcome.status,
                    "now": now,
                    "sent_at": now if sent else None,
                    "provider_id": outcome.detail[:255] if sent else None,
                    "error": None if sent else outcome.detail,
                    "next_at": outcome.retry_at,
                    "since": now if outcome.retry_at is not None else None,
                }
            )
            if outcome.status == MessageStatus.QUEUED:
                continue  # put off: no outcome to tell yet
            event_rows.append(
                events.row(
                    uuid.UUID(message.company_id),
                    EventType.MESSAGE_SENT if sent else EventType.MESSAGE_FAILED,
                    events.message_data(
                        message.id,
                        message.candidate_id,
                        outcome.status,
                        reason=None if sent else outcome.detail,
                        bulk_job_id=message.bulk_job_id,
                    ),
                    personal=events.message_personal(
                        message.envelope_from, message.candidate_name, message.subject
                    ),
                    candidate_id=message.candidate_id,
                )
            )
        following = [outcome.next_id for outcome in outcomes if outcome.next_id is not None]
        with self._engine.begin() as connection:
            connection.execute(_TO_OUTCOME, results)
            if event_rows:
                connection.execute(insert(_EVENT), event_rows)
            moved = set()
            if following:
                moved = set(
                    connection.execute(
                        _TO_SENDING_MANY, {"target_ids": following, "now": now}
                    ).scalars()
                )
        return [outcome.next_id in moved for outcome in outcomes]

    def _set_next_send(self, job_id: uuid.UUID, slot: throttle.Slot) -> None:
        with session_scope(self._engine) as session:
            session.execute(
                update(BulkJob)
                .where(col(BulkJob.id) == job_id)
                .values(
                    next_send_at=datetime.fromtimestamp(slot.at, UTC),
                    next_send_reason="quota" if slot.quota else "rate",
                )
            )

    def _clear_next_send(self, job_id: uuid.UUID) -> None:
        with session_scope(self._engine) as session:
            session.execute(
                update(BulkJob)
                .where(col(BulkJob.id) == job_id)
                .values(next_send_at=None, next_send_reason=None)
            )

    # -- endings ------------------------------------------------------------------------

    @activity.defn(name=FAIL_BULK_BATCH)
    def fail_bulk_batch(self, input: FailBatchInput) -> BatchResult:
        """Retries ran out: what is left of the batch fails, with the reason."""
        with session_scope(self._engine) as session:
            rows = session.exec(
                select(Message).where(
                    Message.bulk_job_id == uuid.UUID(input.job_id),
                    Message.bulk_batch == input.batch,
                    col(Message.status).in_(_PENDING),
                )
            ).all()
            for message in rows:
                message.status = MessageStatus.FAILED
                message.error = input.reason
                message.updated_at = utcnow()
                session.add(message)
                events.message_event(session, message, EventType.MESSAGE_FAILED, input.reason)
            return BatchResult(failed=len(rows))

    @activity.defn(name=FINISH_BULK_SEND)
    def finish_bulk_send(self, input: FinishInput) -> None:
        with session_scope(self._engine) as session:
            job = get_or_fail(session, BulkJob, input.job_id)
            if job.status in (BulkJobStatus.COMPLETED, BulkJobStatus.CANCELLED):
                return  # a retried step: the job and its events are written
            if input.cancelled:
                why = "The bulk send was cancelled before this message was sent."
                for message in session.exec(
                    select(Message).where(
                        Message.bulk_job_id == job.id, col(Message.status).in_(_PENDING)
                    )
                ):
                    message.status = MessageStatus.CANCELLED
                    message.error = why
                    message.updated_at = utcnow()
                    session.add(message)
                    events.message_event(session, message, EventType.MESSAGE_CANCELLED, why)
            job.status = BulkJobStatus.CANCELLED if input.cancelled else BulkJobStatus.COMPLETED
            job.finished_at = utcnow()
            # Every message has ended: the job's files are not needed any more (the job keeps
            # their names and sizes).
            session.execute(delete(BulkFile).where(col(BulkFile.job_id) == job.id))
            job.next_send_at = None
            job.next_send_reason = None
            session.add(job)
            counts = dict(
                session.exec(
                    select(Message.status, func.count())
                    .where(Message.bulk_job_id == job.id)
                    .group_by(col(Message.status))
                ).all()
            )
            events.emit(
                session,
                job.company_id,
                EventType.BULK_CANCELLED if input.cancelled else EventType.BULK_COMPLETED,
                {
                    "bulk_job_id": str(job.id),
                    "status": job.status,
                    "total": job.total,
                    "counts": counts,
                },
            )

    @property
    def all(self) -> list:
        return [
            self.plan_bulk_send,
            self.send_bulk_batch,
            self.fail_bulk_batch,
            self.finish_bulk_send,
        ]


async def _sleep_heartbeating(seconds: float, progress: int) -> None:
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        await asyncio.sleep(min(left, 1.0))
        activity.heartbeat(progress)
