"""The event relay, run by every worker: it numbers committed events (core/events.py), wakes the
runs that deliver them, and hands replies to the runs that notify recruiters. On SQLite it also
truncates the write-ahead log that an erasure could not truncate while the database was busy
(activities/privacy.py).

It holds no state of its own worth keeping: events are numbered under a lock in the database,
an endpoint's run reads from its own cursor (and wakes by itself every few minutes if a signal
is lost), and the notifications' cursor is in the database. Several workers relaying at once
only send the same signal twice, which the runs ignore.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import timedelta

from sqlalchemy import Engine, func, update
from sqlmodel import Session, col, select
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from api.runs import signal_start, wake_endpoint
from contracts.notify import REPLY, ReplyNotificationsInput
from core import events
from core.db import session_scope
from core.events import EventType
from core.models import Event, EventConsumer, WebhookEndpoint, utcnow
from core.privacy.erasure import CHECKPOINTS
from core.run_ids import notify_workflow_id
from core.settings import Settings
from workflows.notify import ReplyNotificationsWorkflow

log = logging.getLogger(__name__)
NOTIFICATIONS = "reply-notifications"
# How often old events are forgotten (RECRUITMAIL_EVENT_RETENTION).
CLEANUP_EVERY = timedelta(hours=1)


class Relay:
    def __init__(self, client: Client, settings: Settings, engine: Engine) -> None:
        self.client = client
        self.settings = settings
        self.engine = engine
        self.seen = self._newest()  # events numbered before this relay started are others'
        self._cleaned_at = 0.0

    def _newest(self) -> int:
        with Session(self.engine) as session:
            return int(session.exec(select(func.max(Event.seq))).one() or 0)

    async def tick(self) -> int:
        """One round: number, wake endpoints, notify, forget; how many events were new."""
        await asyncio.to_thread(self._sequence)
        fresh = await asyncio.to_thread(self._since, self.seen)
        if fresh:
            self.seen = max(seq for seq, _ in fresh)
            await self._wake_endpoints({company for _, company in fresh})
        await self._notify()
        await self._forget()
        if CHECKPOINTS.pending and self.engine.dialect.name == "sqlite":
            await asyncio.to_thread(CHECKPOINTS.flush, self.engine)
        return len(fresh)

    def _sequence(self) -> None:
        with Session(self.engine) as session:
            if not events.unsequenced(session):
                return
        while True:
            with session_scope(self.engine) as session:
                if events.sequence(session) < events.SEQUENCE_BATCH:
                    return

    def _since(self, seq: int) -> list[tuple[int, uuid.UUID]]:
        with Session(self.engine) as session:
            rows = session.exec(
                select(Event.seq, Event.company_id)
                .where(col(Event.seq) > seq)
                .order_by(col(Event.seq))
                .limit(5000)
            ).all()
        return [(int(s or 0), company) for s, company in rows]

    async def _wake_endpoints(self, companies: set[uuid.UUID]) -> None:
        endpoints = await asyncio.to_thread(self._endpoints, companies)
        for endpoint_id, company_id in endpoints:
            try:
                await wake_endpoint(self.client, self.settings, endpoint_id, company_id)
            except Exception:
                log.warning("could not wake the run of endpoint %s", endpoint_id, exc_info=True)

    def _endpoints(self, companies: set[uuid.UUID]) -> list[tuple[uuid.UUID, uuid.UUID]]:
        with Session(self.engine) as session:
            rows = session.exec(
                select(WebhookEndpoint.id, WebhookEndpoint.company_id).where(
                    col(WebhookEndpoint.company_id).in_(list(companies)),
                    WebhookEndpoint.disabled == False,  # noqa: E712 - SQL
                )
            ).all()
        return [(e, c) for e, c in rows]

    async def _notify(self) -> None:
        """Hand new replies to the runs that email recruiters (at least once; they dedup)."""
        last, replies = await asyncio.to_thread(self._replies)
        if not replies:
            return
        if not self.settings.reply_notifications:
            await asyncio.to_thread(self._advance, last, replies[-1][0])
            return
        newest = last
        for seq, company_id, candidate_id, message_id in replies:
            workflow_id = notify_workflow_id(str(company_id), candidate_id)
            try:
                await signal_start(
                    self.client,
                    ReplyNotificationsWorkflow.run,
                    ReplyNotificationsInput(
                        str(company_id),
                        str(candidate_id) if candidate_id else None,
                        self.settings.notify_coalesce,
                    ),
                    workflow_id=workflow_id,
                    signal=REPLY,
                    signal_args=[message_id],
                    settings=self.settings,
                    company_id=str(company_id),
                )
            except RPCError as err:
                if err.status != RPCStatusCode.INVALID_ARGUMENT:
                    raise  # Temporal unreachable: the round is tried again
                # That one run refuses the signal (a limit of the run): its recruiter misses
                # one email; every other company's notifications go on.
                log.warning("reply notification for %s not signalled: %s", workflow_id, err)
            newest = seq
        await asyncio.to_thread(self._advance, last, newest)

    def _replies(self) -> tuple[int, list[tuple[int, uuid.UUID, uuid.UUID | None, str]]]:
        """(the cursor, the replies after it). A database that never notified starts now."""
        with session_scope(self.engine) as session:
            consumer = session.get(EventConsumer, NOTIFICATIONS)
            if consumer is None:
                newest = int(session.exec(select(func.max(Event.seq))).one() or 0)
                session.add(EventConsumer(name=NOTIFICATIONS, last_seq=newest))
                return newest, []
            last = consumer.last_seq
            rows = session.exec(
                select(Event.seq, Event.company_id, Event.candidate_id, Event.data)
                .where(col(Event.seq) > last, Event.type == EventType.MESSAGE_RECEIVED)
                .order_by(col(Event.seq))
                .limit(500)
            ).all()
        replies = [
            (int(seq or 0), company, candidate, str(data.get("message_id")))
            for seq, company, candidate, data in rows
            if data.get("kind") == "mail"  # never for auto-replies or bounces
        ]
        if rows and not replies:
            self._advance(last, int(rows[-1][0] or last))
        return last, replies

    def _advance(self, last: int, newest: int) -> None:
        """Move the cursor, unless another relay moved it first (it then did this work)."""
        with session_scope(self.engine) as session:
            session.execute(
                update(EventConsumer)
                .where(
                    col(EventConsumer.name) == NOTIFICATIONS, col(EventConsumer.last_seq) == last
                )
                .values(last_seq=newest)
            )

    async def _forget(self) -> None:
        now = asyncio.get_running_loop().time()
        if now - self._cleaned_at < CLEANUP_EVERY.total_seconds():
            return
        self._cleaned_at = now
        cutoff = utcnow() - self.settings.event_retention

        def forget() -> int:
            total = 0
            while True:
                with session_scope(self.engine) as session:
                    done = events.forget_before(session, cutoff)
                total += done
                if done == 0:
                    return total

        if forgotten := await asyncio.to_thread(forget):
            log.info("forgot %d events older than %s", forgotten, self.settings.event_retention)


async def relay_forever(client: Client, settings: Settings, engine: Engine) -> None:
    relay = Relay(client, settings, engine)
    while True:
        await asyncio.sleep(settings.relay_interval.total_seconds())
        try:
            await relay.tick()
        except Exception:
            log.warning("the event relay failed a round", exc_info=True)
