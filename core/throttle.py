"""Per-mailbox send throttles, enforced across every job and worker through the database.

Each send takes a slot with one UPDATE that advances the mailbox's `next_slot`, so two
batches sending through the same mailbox, on any workers, never take the same slot. The
UPDATE is the first statement of its transaction: on SQLite that takes the write lock with a
fresh snapshot, on PostgreSQL the row lock, so the read-modify-write is atomic on both.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, case, literal, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from core.models import MailboxThrottle, table_of


@dataclass(frozen=True)
class Rate:
    interval: float  # seconds between sends; 0 = unlimited
    daily_cap: int = 0  # 0 = none

    @property
    def limited(self) -> bool:
        return self.interval > 0 or self.daily_cap > 0

    @classmethod
    def per_minute(cls, per_minute: float, daily_cap: int = 0) -> Rate:
        """0 per minute means no interval; each provider picks its settings."""
        return cls(interval=60.0 / per_minute if per_minute > 0 else 0.0, daily_cap=daily_cap)


def ensure_row(engine: Engine, key: str) -> None:
    """Create the mailbox's row once; reserve() then only updates it."""
    with Session(engine) as session:
        if session.get(MailboxThrottle, key) is not None:
            return
        session.add(MailboxThrottle(key=key))
        try:
            session.commit()
        except IntegrityError:
            session.rollback()  # created concurrently: fine


def reserve(engine: Engine, key: str, rate: Rate, now: float | None = None) -> float:
    """Take the mailbox's next send slot; returns its time (epoch seconds), maybe `now`.

    The row must exist (ensure_row): this is one UPDATE per send, on the hot path."""
    now = time.time() if now is None else now
    table = table_of(MailboxThrottle)
    start = case((table.c.next_slot > literal(now), table.c.next_slot), else_=literal(now))
    with Session(engine) as session:
        row = session.execute(
            update(table)
            .where(table.c.key == key)
            .values(next_slot=start + literal(rate.interval))
            .returning(table.c.next_slot)
        ).one()
        slot = float(row.next_slot) - rate.interval
        if rate.daily_cap:
            day = datetime.fromtimestamp(slot, UTC).date().isoformat()
            counted = session.execute(
                update(table)
                .where(table.c.key == key)
                .values(
                    day_count=case((table.c.day == day, table.c.day_count + 1), else_=1),
                    day=day,
                )
                .returning(table.c.day_count)
            ).one()
            if counted.day_count > rate.daily_cap:
                # Today's quota is spent: the next slot is the start of the next UTC day.
                tomorrow = datetime.fromisoformat(day).replace(tzinfo=UTC) + timedelta(days=1)
                slot = tomorrow.timestamp()
                session.execute(
                    update(table)
                    .where(table.c.key == key)
                    .values(
                        next_slot=slot + rate.interval,
                        day=tomorrow.date().isoformat(),
                        day_count=1,
                    )
                )
        session.commit()
    return slot


def hold_back(engine: Engine, key: str, seconds: float) -> None:
    """The provider said wait (429, Retry-After): no send through this mailbox before then."""
    until = time.time() + seconds
    ensure_row(engine, key)
    table = table_of(MailboxThrottle)
    with Session(engine) as session:
        session.execute(
            update(table)
            .where(table.c.key == key, table.c.next_slot < literal(until))
            .values(next_slot=until)
        )
        session.commit()
