"""A few requests at once per mailbox, across every worker process: Graph lets an application
run at most four concurrent requests against one mailbox (learn.microsoft.com/graph/
throttling-limits, Outlook service limits: MailboxConcurrency) and answers the fifth with 429.
A send through such a mailbox holds one of its slots (a `mailbox_lease` row) while it talks to
the API; a holder that died frees its slot when the lease runs out.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from sqlalchemy import Engine, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from core.errors import TransientMailError
from core.models import MailboxLease, utcnow

# Longer than any one request to the API (a send, a 4 MB upload range), so a live holder never
# loses its slot; a crashed one gives it back after this.
LEASE = timedelta(minutes=2)
# How long a send waits for a slot before it is put off (and tried again on its backoff).
WAIT = 60.0


def _claim(engine: Engine, key: str, slots: int, holder: str) -> int | None:
    """A free slot taken for `holder`, or None when all are held."""
    now = utcnow()
    with engine.begin() as conn:
        free = [
            int(slot)
            for slot in conn.execute(
                select(col(MailboxLease.slot))
                .where(
                    col(MailboxLease.key) == key,
                    col(MailboxLease.slot) < slots,
                    or_(col(MailboxLease.until).is_(None), col(MailboxLease.until) < now),
                )
                .order_by(col(MailboxLease.slot))
            ).scalars()
        ]
        if not free:
            known = set(
                conn.execute(
                    select(col(MailboxLease.slot)).where(col(MailboxLease.key) == key)
                ).scalars()
            )
            if len(known) >= slots:
                return None
            free = [slot for slot in range(slots) if slot not in known]
            for slot in free:
                try:
                    with conn.begin_nested():
                        conn.execute(insert(MailboxLease).values(key=key, slot=slot))
                except IntegrityError:
                    continue  # another process made it: it is claimed below like any other
        for slot in free:
            # One conditional UPDATE: two claimants of the same slot cannot both win it.
            taken = conn.execute(
                update(MailboxLease)
                .where(
                    col(MailboxLease.key) == key,
                    col(MailboxLease.slot) == slot,
                    or_(col(MailboxLease.until).is_(None), col(MailboxLease.until) < now),
                )
                .values(holder=holder, until=now + LEASE)
            )
            if taken.rowcount == 1:
                return slot
    return None


def _free(engine: Engine, key: str, slot: int, holder: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(MailboxLease)
            .where(
                col(MailboxLease.key) == key,
                col(MailboxLease.slot) == slot,
                col(MailboxLease.holder) == holder,
            )
            .values(holder=None, until=None)
        )


@asynccontextmanager
async def held(engine: Engine, key: str, slots: int, wait: float = WAIT) -> AsyncIterator[None]:
    """Hold one of the mailbox's `slots` for the block; waits for one (up to `wait` seconds,
    then the send is put off as throttled)."""
    holder = secrets.token_hex(8)
    deadline = time.monotonic() + wait
    pause = 0.02
    while (slot := await asyncio.to_thread(_claim, engine, key, slots, holder)) is None:
        if time.monotonic() > deadline:
            raise TransientMailError(
                f"The mailbox's {slots} requests at once are all in use; the message waits "
                "and goes then.",
                retry_after=timedelta(seconds=5),
            )
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.5)
    try:
        yield
    finally:
        await asyncio.to_thread(_free, engine, key, slot, holder)
