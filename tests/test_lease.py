"""A mailbox's few concurrent requests (core/send/lease.py): slots claimed atomically in the
database, given back, and a dead holder's slot freed when its lease runs out."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlmodel import col

from core.errors import TransientMailError
from core.models import MailboxLease, utcnow
from core.send import lease

pytestmark = pytest.mark.fast


def test_slots_are_claimed_once_each_even_by_racing_claimants(engine):
    with ThreadPoolExecutor(8) as pool:
        taken = list(pool.map(lambda i: lease._claim(engine, "graph:a", 4, f"h{i}"), range(8)))
    assert sorted(s for s in taken if s is not None) == [0, 1, 2, 3]
    assert taken.count(None) == 4
    lease._free(engine, "graph:a", 0, "nobody")
    assert lease._claim(engine, "graph:a", 4, "late") is None  # a stranger frees nothing
    holder = f"h{taken.index(2)}"
    lease._free(engine, "graph:a", 2, holder)
    assert lease._claim(engine, "graph:a", 4, "late") == 2
    assert lease._claim(engine, "graph:b", 4, "other") == 0  # mailboxes do not share slots


def test_a_dead_holders_slot_frees_itself_and_a_full_mailbox_puts_the_send_off(engine):
    for i in range(4):
        assert lease._claim(engine, "graph:c", 4, f"h{i}") == i
    with engine.begin() as conn:  # slot 1's holder died: its lease ran out
        conn.execute(
            update(MailboxLease)
            .where(col(MailboxLease.key) == "graph:c", col(MailboxLease.slot) == 1)
            .values(until=utcnow() - timedelta(seconds=1))
        )
    assert lease._claim(engine, "graph:c", 4, "next") == 1

    async def full() -> None:
        async with lease.held(engine, "graph:c", 4, wait=0.2):
            pass

    with pytest.raises(TransientMailError) as put_off:
        asyncio.run(full())
    assert put_off.value.retry_after is not None
