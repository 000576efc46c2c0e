"""The safety net for sends, bulk sends and erasures: a message or bulk job committed as
`queued` whose run never started (the API died between its commit and Temporal's) is started
here, by its workflow id, so a second start is a no-op; so is an erasure still `running`
without a run (an operator terminated it). Every worker runs it; they cannot double a send."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlmodel import Session, SQLModel, col, select
from temporalio.client import Client

from api.runs import start_bulk, start_erasure, start_send
from core import attachments
from core.models import BulkJob, Direction, Erasure, Message, utcnow
from core.settings import Settings
from core.statuses import BulkJobStatus, MessageStatus

log = logging.getLogger(__name__)
M = TypeVar("M", bound=SQLModel)
R = TypeVar("R", BulkJob, Erasure, Message)


def _oldest(
    engine: Engine, model: type[M], *where: Any, older_than: timedelta, limit: int = 100
) -> list[M]:
    """Rows of `model` matching `where` and created more than `older_than` ago, oldest first."""
    created = col(model.created_at)  # type: ignore[attr-defined]
    with Session(engine, expire_on_commit=False) as session:
        return list(
            session.exec(
                select(model)
                .where(*where, created < utcnow() - older_than)
                .order_by(created)
                .limit(limit)
            ).all()
        )


async def _start_each(rows: list[R], start: Callable[[R], Awaitable[bool]], what: str) -> int:
    """Start each row's run (a run already under way is left as it is); how many started."""
    started = 0
    for row in rows:
        try:
            if await start(row):
                started += 1
        except Exception:
            log.warning("could not start the run of %s %s", what, row.id, exc_info=True)
    return started


async def sweep_once(client: Client, settings: Settings, engine: Engine) -> int:
    """Start the run of each single send still `queued` (or `scheduled`: its run waits for its
    time) after the sweep interval (bulk
    messages belong to their job); how many were handed to their runs."""
    stranded = await asyncio.to_thread(
        _oldest,
        engine,
        Message,
        Message.direction == Direction.OUTBOUND,
        col(Message.status).in_([MessageStatus.QUEUED, MessageStatus.SCHEDULED]),
        col(Message.bulk_job_id).is_(None),
        older_than=settings.send_sweep_interval,
    )
    return await _start_each(
        stranded, lambda message: start_send(client, settings, message), "queued message"
    )


async def resume_bulk_jobs(client: Client, settings: Settings, engine: Engine) -> int:
    """Start the run of each bulk send still `queued` after the sweep interval (its run plans
    it `running` at once); how many were started."""
    stranded = await asyncio.to_thread(
        _oldest,
        engine,
        BulkJob,
        col(BulkJob.status).in_([BulkJobStatus.QUEUED, BulkJobStatus.SCHEDULED]),
        older_than=settings.send_sweep_interval,
    )
    return await _start_each(stranded, lambda job: start_bulk(client, settings, job), "bulk send")


async def resume_erasures(client: Client, settings: Settings, engine: Engine) -> int:
    """Each unfinished erasure's run: the running one left as it is, a terminated one again."""
    found = await asyncio.to_thread(
        _oldest,
        engine,
        Erasure,
        Erasure.status == "running",
        older_than=settings.send_sweep_interval,
    )

    async def start(erasure: Erasure) -> bool:
        await start_erasure(client, settings, erasure)
        return True

    await _start_each(found, start, "erasure")
    return len(found)


def purge_uploads(engine: Engine) -> int:
    """Files uploaded for sending more than a day ago (a send copied what it used)."""
    with Session(engine) as session:
        count = attachments.purge(session)
        session.commit()
        return count


async def sweep_forever(client: Client, settings: Settings, engine: Engine) -> None:
    while True:
        await asyncio.sleep(settings.send_sweep_interval.total_seconds())
        try:
            if count := await sweep_once(client, settings, engine):
                log.info("started the runs of %d queued messages", count)
            if count := await resume_bulk_jobs(client, settings, engine):
                log.info("started the runs of %d queued bulk sends", count)
            await resume_erasures(client, settings, engine)
            if count := await asyncio.to_thread(purge_uploads, engine):
                log.info("deleted %d uploads older than a day", count)
        except Exception:
            log.warning("the send sweep failed", exc_info=True)
