"""Activities of the privacy workflows: erase a candidate's mail everywhere, in batches and
idempotently; find what the retention rules make due; ask a candidate before forgetting."""

from __future__ import annotations

import asyncio
import time
import uuid

from sqlalchemy import Engine
from sqlmodel import Session
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
from core.db import get_or_fail, session_scope
from core.models import (
    Candidate,
    Company,
    Erasure,
    utcnow,
)
from core.privacy import erasure as erasing
from core.privacy import (
    retention,
    retention_consent_mail,
    retention_consent_url,
)
from core.privacy.erasure import CHECKPOINT_TRY_SECONDS, CHECKPOINTS
from providers.base import Outgoing

# The sweep erases a candidate itself up to this many message batches; beyond, a run of its own.
SWEEP_BATCHES_PER_CANDIDATE = 4


class PrivacyActivities(PrivacyContract):
    def __init__(self, engine: Engine, accounts: Accounts) -> None:
        self._engine = engine
        self._accounts = accounts
        self._settings = accounts.settings
        self._batch = self._settings.erase_batch_size

    # -- erasure (core/privacy/erasure.py) ---------------------------------------------------

    def _erasure(self, session: Session, ref: ErasureRef) -> tuple[Erasure, Candidate]:
        erasure = get_or_fail(session, Erasure, ref.erasure_id)
        return erasure, get_or_fail(session, Candidate, erasure.candidate_id)

    @activity.defn(name=STOP_SENDS)
    def stop_sends(self, input: ErasureRef) -> StopResult:
        with session_scope(self._engine) as session:
            cancelled, in_flight, woken = erasing.stop_sends(
                session, *self._erasure(session, input)
            )
            return StopResult(cancelled=cancelled, in_flight=in_flight, woken=woken)

    @activity.defn(name=ERASE_MESSAGES)
    def erase_messages(self, input: ErasureRef) -> BatchResult:
        """One batch of the messages to or from the candidate, the Unassigned ones from their
        addresses included: content, headers, attachments, raw bytes, events' personal fields
        and audit details go; ids, statuses and times stay."""
        with session_scope(self._engine) as session:
            erasure, candidate = self._erasure(session, input)
            done = erasing.erase_batch(session, erasure, candidate, self._batch)
            return BatchResult(done=done, more=done == self._batch)

    @activity.defn(name=ERASE_OUTBOX_COPIES)
    def erase_outbox_copies(self, input: ErasureRef) -> int:
        """The dev outbox's copies of the candidate's mail, and of the notices that told of it.
        Runs before the messages are erased, while the Unassigned ones from the candidate's
        addresses can still be found."""
        with Session(self._engine) as session:
            _, candidate = self._erasure(session, input)
            targets = erasing.outbox_targets(self._settings, session, candidate)
        deleted = erasing.delete_copies(*targets)
        with session_scope(self._engine) as session:
            erasure = get_or_fail(session, Erasure, input.erasure_id)
            erasure.outbox_copies_deleted += deleted
            session.add(erasure)
        return deleted

    @activity.defn(name=FINISH_ERASURE)
    def finish_erasure(self, input: ErasureRef) -> None:
        with session_scope(self._engine) as session:
            erasing.finish(session, *self._erasure(session, input), self._batch)

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

    # -- retention (core/privacy/retention.py) -------------------------------------------------

    @activity.defn(name=FIND_DUE)
    def find_due_erasures(self, input: SweepInput) -> DueWork:
        """Closed applications past each company's rule: erasures registered, or candidates to
        ask first (once)."""
        with session_scope(self._engine) as session:
            due = retention.find_due(session, input.batch_size)
            return DueWork(
                erase=[_due(erasure) for erasure in due.erase],
                ask=[
                    RetentionConsentAsk(
                        str(candidate.id), str(candidate.company_id), left.total_seconds()
                    )
                    for candidate, left in due.ask
                ],
                more=due.more,
            )

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

    @activity.defn(name=DELETE_OLD_UNASSIGNED)
    def delete_old_unassigned(self, input: SweepInput) -> BatchResult:
        """Unassigned messages older than each company's `unassigned_retention_days` (180 by
        default), with their attachments and raw bytes."""
        with session_scope(self._engine) as session:
            done, more = retention.delete_old_unassigned(session, self._batch)
            return BatchResult(done=done, more=more)

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
            erasure = retention.record_answer(session, input.candidate_id, input.answer)
            return RetentionConsentOutcome(_due(erasure) if erasure is not None else None)

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


def _due(erasure: Erasure) -> DueErasure:
    return DueErasure(str(erasure.id), str(erasure.candidate_id), str(erasure.company_id))
