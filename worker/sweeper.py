"""The safety net for sends, bulk sends and erasures: a message or bulk job committed as
`queued` whose run never started (the API died between its commit and Temporal's) is started
here, by its workflow id, so a second start is a no-op; so is an erasure still `running`
without a run (an operator terminated it). Every worker runs it; they cannot double a send."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from sqlalchemy import Engine
from sqlmodel import Session, col, select
from temporalio.client import Client

from core.models import BulkJob, Direction, Erasure, Message, utcnow
from core.settings import Settings
from core.statuses import BulkJobStatus, MessageStatus
from workflows.client import start_bulk, start_erasure, start_send

log = logging.getLogger(__name__)


def stranded(engine: Engine, older_than: timedelta, limit: int = 100) -> list[Message]:
    """Single sends still `queued` after `older_than` (bulk messages belong to their job)."""
    cutoff = utcnow() - older_than
    with Session(engine, expire_on_commit=False) as session:
        return list(
            session.exec(
                select(Message)
                .where(
                    Message.direction == Direction.OUTBOUND,
                    Message.status == MessageStatus.QUEUED,
                    col(Message.bulk_job_id).is_(None),
                    col(Message.created_at) < cutoff,
                )
                .order_by(col(Message.created_at))
                .limit(limit)
            ).all()
        )


async def sweep_once(client: Client, settings: Settings, engine: Engine) -> int:
    """Start the run of each stranded message (a run already under way is left as it is);
    how many stranded messages were found and handed to their runs."""
    started = 0
    for message in await asyncio.to_thread(stranded, engine, settings.send_sweep_interval):
        try:
            if await start_send(client, settings, message):
                started += 1
        except Exception:
            log.warning("could not start the run of queued message %s", message.id, exc_info=True)
    return started


def stranded_jobs(engine: Engine, older_than: timedelta, limit: int = 100) -> list[BulkJob]:
    """Bulk sends still `queued` after `older_than` (their run plans them `running` at once)."""
    cutoff = utcnow() - older_than
    with Session(engine, expire_on_commit=False) as session:
        return list(
            session.exec(
                select(BulkJob)
                .where(BulkJob.status == BulkJobStatus.QUEUED, col(BulkJob.created_at) < cutoff)
                .order_by(col(BulkJob.created_at))
                .limit(limit)
            ).all()
        )


async def resume_bulk_jobs(client: Client, settings: Settings, engine: Engine) -> int:
    """Start the run of each stranded bulk send; how many were started."""
    started = 0
    for job in await asyncio.to_thread(stranded_jobs, engine, settings.send_sweep_interval):
        try:
            if await start_bulk(client, settings, job):
                started += 1
        except Exception:
            log.warning("could not start the run of bulk send %s", job.id, exc_info=True)
    return started


def unfinished_erasures(engine: Engine, older_than: timedelta, limit: int = 100) -> list[Erasure]:
    cutoff = utcnow() - older_than
    with Session(engine, expire_on_commit=False) as session:
        return list(
            session.exec(
                select(Erasure)
                .where(Erasure.status == "running", col(Erasure.created_at) < cutoff)
                .order_by(col(Erasure.created_at))
                .limit(limit)
            ).all()
        )


async def resume_erasures(client: Client, settings: Settings, engine: Engine) -> int:
    """Each unfinished erasure's run: the running one left as it is, a terminated one again."""
    found = await asyncio.to_thread(unfinished_erasures, engine, settings.send_sweep_interval)
    for erasure in found:
        try:
            await start_erasure(client, settings, erasure)
        except Exception:
            log.warning("could not start the erasure %s", erasure.id, exc_info=True)
    return len(found)


async def sweep_forever(client: Client, settings: Settings, engine: Engine) -> None:
    while True:
        await asyncio.sleep(settings.send_sweep_interval.total_seconds())
        try:
            if count := await sweep_once(client, settings, engine):
                log.info("started the runs of %d queued messages", count)
            if count := await resume_bulk_jobs(client, settings, engine):
                log.info("started the runs of %d queued bulk sends", count)
            await resume_erasures(client, settings, engine)
        except Exception:
            log.warning("the send sweep failed", exc_info=True)
