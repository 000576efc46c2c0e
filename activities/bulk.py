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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import Engine, delete, func, update
from sqlalchemy import select as core_select
from sqlmodel import Session, col, select
from temporalio import activity

from activities.accounts import Accounts
from activities.common import UNSENDABLE, to_application_error, unsendable
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
from core.mail import bulk_boundary, file_parts, splice
from core.models import (
    BulkFile,
    BulkJob,
    Candidate,
    Message,
    utcnow,
)
from core.send import compose, lifecycle
from core.send.compose import SenderReplaced
from core.send.lifecycle import BatchOutcome, Pending
from core.settings import Settings
from core.statuses import BulkJobStatus, MessageStatus
from providers.base import MailSession, Outgoing

R = TypeVar("R")
# Waits up to this long inside the batch; a longer one goes back to the workflow's timer.
MAX_INLINE_WAIT = 60.0
# A message whose send keeps failing transiently inside one attempt of the batch: the batch
# attempt fails and Temporal retries it later (skipping what was sent).
MAX_TRANSIENT_TRIES = 4
# A heartbeat costs an encode and a call into the SDK's core: one a second is plenty (the
# timeout is 30 s by default), and progress is in the database anyway.
HEARTBEAT_EVERY = 1.0


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
    def __init__(self, engine: Engine, settings: Settings, accounts: Accounts) -> None:
        self._engine = engine
        self._settings = settings
        self._accounts = accounts
        self.box = accounts.box
        self._outcomes = GroupCommit(in_thread(partial(lifecycle.advance_many, engine)))
        self._files_cache: tuple[uuid.UUID, bytes] | None = None

    # -- planning -----------------------------------------------------------------------

    @activity.defn(name=PLAN_BULK_SEND)
    def plan_bulk_send(self, input: PlanInput) -> int:
        """Resolve each recipient's sender, compose every MIME once, number the batches."""
        with session_scope(self._engine) as session:
            return bulk.plan(session, self._settings, self.box, input.job_id, input.batch_size)

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
                    self._accounts.sender_for, transport_name, connection_id
                )
            except SenderReplaced:
                # The scope switched since planning: the batch goes out from the sender in
                # effect now, each message composed again (same Message-ID).
                for message in pending:
                    await asyncio.to_thread(self._recompose, message.id)
                cancelled, pending, later = await asyncio.to_thread(
                    self._load_batch, job_id, input.batch
                )
                transport_name, connection_id = pending[0].transport, pending[0].connection_id
                provider, account = await asyncio.to_thread(
                    self._accounts.sender_for, transport_name, connection_id
                )
        except MailError as err:
            raise await self._batch_error(err, connection_id) from err
        mailbox = _Mailbox(
            job_id=job_id,
            connection_id=connection_id,
            session=provider.session(account),
            rate=await asyncio.to_thread(self._accounts.rate_for, provider, connection_id),
        )
        if mailbox.rate.limited:
            await asyncio.to_thread(throttle.ensure_row, self._engine, mailbox.key)
        last_check = last_beat = time.monotonic()
        try:
            ready = await self._on_rows(lifecycle.to_sending, pending[0].id)
            for index, message in enumerate(pending):
                next_id = pending[index + 1].id if index + 1 < len(pending) else None
                if not ready:  # cancelled since the batch was loaded: its candidate's erasure
                    ready = bool(next_id) and await asyncio.to_thread(
                        lifecycle.to_sending, self._engine, next_id
                    )
                    continue
                if time.monotonic() - last_check > 1.0:
                    last_check = time.monotonic()
                    if await asyncio.to_thread(self._cancel_requested, job_id):
                        await self._on_rows(lifecycle.requeue, message.id)
                        result.cancelled = True
                        return result
                outcome = await self._deliver(mailbox, message, index)
                if outcome is None:  # cancelled while it waited for its slot
                    ready = bool(next_id) and await asyncio.to_thread(
                        lifecycle.to_sending, self._engine, next_id
                    )
                    continue
                if isinstance(outcome, float):  # the mailbox's next slot is far off
                    await self._on_rows(lifecycle.requeue, message.id)
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
        self, message: Pending, status: str, detail: str, next_id: uuid.UUID | None
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
        self, mailbox: _Mailbox, message: Pending, index: int
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
                    await asyncio.to_thread(
                        lifecycle.attempt_paused, self._engine, message.id, True
                    )
                    await _sleep_heartbeating(wait, index)
                    if not await asyncio.to_thread(
                        lifecycle.attempt_paused, self._engine, message.id, False
                    ):
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
            err = await asyncio.to_thread(self._accounts.needs_reauth, connection_id, err)
        return to_application_error(err)

    # -- database steps -----------------------------------------------------------------

    def _on_rows(self, step: Callable[..., R], *args: Any) -> Awaitable[R]:
        """A lifecycle step on the messages' rows (core/send/lifecycle.py), off the loop."""
        return asyncio.to_thread(step, self._engine, *args)

    def _recompose(self, message_id: uuid.UUID) -> None:
        """The scope's sender changed since planning: the message is composed again (same
        Message-ID) for the sender in effect now."""
        with session_scope(self._engine) as session:
            message = get_or_fail(session, Message, message_id)
            try:
                compose.recompose(session, self.box, self._settings, message)
            except UNSENDABLE as exc:
                raise unsendable(exc) from exc

    def _load_batch(
        self, job_id: uuid.UUID, batch: int
    ) -> tuple[bool, list[Pending], float | None]:
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
                    col(Message.status).in_(lifecycle.PENDING),
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
                Pending(
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
            box = self.box
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
            failed = lifecycle.end_pending(
                session, uuid.UUID(input.job_id), MessageStatus.FAILED, input.reason, input.batch
            )
            return BatchResult(failed=failed)

    @activity.defn(name=FINISH_BULK_SEND)
    def finish_bulk_send(self, input: FinishInput) -> None:
        with session_scope(self._engine) as session:
            job = get_or_fail(session, BulkJob, input.job_id)
            if job.status in (BulkJobStatus.COMPLETED, BulkJobStatus.CANCELLED):
                return  # a retried step: the job and its events are written
            if input.cancelled:
                why = "The bulk send was cancelled before this message was sent."
                lifecycle.end_pending(session, job.id, MessageStatus.CANCELLED, why)
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
