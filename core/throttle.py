"""Per-mailbox send throttles, enforced across every job and worker through the database:
messages per minute, and messages and recipients per rolling 24 hours, as Google and
Microsoft count them (docs/deliverability.md). No counter resets at midnight.

Each send takes a slot with one UPDATE that advances the mailbox's `next_slot`, so two
batches sending through the same mailbox, on any workers, never take the same slot. The
UPDATE is the first statement of its transaction: on SQLite that takes the write lock with a
fresh snapshot, on PostgreSQL the row lock, so the read-modify-write is atomic on both.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, case, delete, insert, literal, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from core.models import MailboxThrottle, ThrottleSend, table_of

WINDOW = 24 * 3600.0  # the providers' "per day": a rolling 24 hours, not a calendar day


@dataclass(frozen=True)
class Rate:
    interval: float  # seconds between sends; 0 = unlimited
    daily_cap: int = 0  # messages per rolling 24 hours; 0 = none
    daily_recipients: int = 0  # recipients (To, Cc, Bcc) per rolling 24 hours; 0 = none

    @property
    def limited(self) -> bool:
        return self.interval > 0 or self.windowed

    @property
    def windowed(self) -> bool:
        return self.daily_cap > 0 or self.daily_recipients > 0

    @classmethod
    def per_minute(cls, per_minute: float, daily_cap: int = 0, daily_recipients: int = 0) -> Rate:
        """0 per minute means no interval; each provider picks its settings."""
        return cls(
            interval=60.0 / per_minute if per_minute > 0 else 0.0,
            daily_cap=daily_cap,
            daily_recipients=daily_recipients,
        )


def rate_of(kind: str, settings: Any) -> Rate:
    """The default rate of a mailbox of this kind (google, microsoft, smtp, or the platform's
    transports), from the settings (docs/deliverability.md has their sources)."""
    if kind == "google":
        return Rate.per_minute(
            settings.bulk_rate_google_per_minute,
            settings.bulk_daily_cap_google,
            settings.bulk_daily_recipients_google,
        )
    if kind == "microsoft":
        return Rate.per_minute(
            settings.bulk_rate_microsoft_per_minute,
            daily_recipients=settings.bulk_daily_recipients_microsoft,
        )
    if kind == "smtp":
        return Rate.per_minute(
            settings.bulk_rate_smtp_per_minute,
            settings.bulk_daily_cap_smtp,
            settings.bulk_daily_recipients_smtp,
        )
    if kind in ("smtp_relay", "dev_outbox", "platform"):
        return Rate.per_minute(
            settings.bulk_rate_platform_per_minute,
            settings.bulk_daily_cap_platform,
            settings.bulk_daily_recipients_platform,
        )
    return Rate(interval=0.0)


def with_overrides(rate: Rate, messages: int | None, recipients: int | None) -> Rate:
    """The provider's rate with a connection's own 24-hour quota where it sets one."""
    return Rate(
        rate.interval,
        rate.daily_cap if messages is None else messages,
        rate.daily_recipients if recipients is None else recipients,
    )


@dataclass(frozen=True)
class Slot:
    at: float  # when the send may go (epoch seconds), maybe now
    quota: bool = False  # held back by the 24-hour quota, not only by the per-minute rate


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


def reserve(
    engine: Engine, key: str, rate: Rate, now: float | None = None, recipients: int = 1
) -> Slot:
    """Take the mailbox's next send slot for a message to `recipients` addresses.

    The row must exist (ensure_row). One UPDATE per send takes the per-minute slot (and the
    mailbox's lock, so concurrent reservations see each other); with a daily quota the sends
    of the 24 hours before the slot are counted, messages and recipients, and the slot moves
    to when enough of them have aged out."""
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
        slot = Slot(float(row.next_slot) - rate.interval)
        if rate.windowed:
            slot = _within_quota(session, key, rate, slot.at, recipients)
            if slot.quota:
                session.execute(
                    update(table)
                    .where(table.c.key == key)
                    .values(next_slot=literal(slot.at + rate.interval))
                )
            sends = table_of(ThrottleSend)
            session.execute(insert(sends).values(key=key, at=slot.at, recipients=recipients))
            # Sends older than any window still counts are forgotten.
            session.execute(
                delete(sends).where(sends.c.key == key, sends.c.at <= literal(now - WINDOW))
            )
        session.commit()
    return slot


def admit(
    engine: Engine, key: str, rate: Rate, recipients: int = 1, now: float | None = None
) -> float | None:
    """A single send through the mailbox now, counted in its 24-hour quota: None when it fits
    (the send is counted), else when the quota lets it go (nothing counted: the caller waits
    and asks again). The per-minute rate is the bulk sends' alone."""
    now = time.time() if now is None else now
    ensure_row(engine, key)
    table = table_of(MailboxThrottle)
    with Session(engine) as session:
        # The mailbox's lock, as reserve() takes it, so the count and the insert are atomic.
        session.execute(update(table).where(table.c.key == key).values(next_slot=table.c.next_slot))
        slot = _within_quota(session, key, rate, now, recipients)
        if slot.quota:
            session.rollback()
            return slot.at
        sends = table_of(ThrottleSend)
        session.execute(insert(sends).values(key=key, at=now, recipients=recipients))
        session.commit()
    return None


def _within_quota(session: Session, key: str, rate: Rate, at: float, recipients: int) -> Slot:
    """The first time from `at` on when one more message to `recipients` fits both quotas."""
    sends = table_of(ThrottleSend)
    counted = session.execute(
        select(sends.c.at, sends.c.recipients)
        .where(sends.c.key == key, sends.c.at > literal(at - WINDOW))
        .order_by(sends.c.at)
    ).all()
    messages = len(counted) + 1
    addressed = sum(r.recipients for r in counted) + recipients
    slot = at
    for sent in counted:
        over_messages = rate.daily_cap and messages > rate.daily_cap
        over_recipients = rate.daily_recipients and addressed > rate.daily_recipients
        if not (over_messages or over_recipients):
            break
        # This send must leave the window first.
        slot = max(slot, float(sent.at) + WINDOW)
        messages -= 1
        addressed -= sent.recipients
    return Slot(slot, quota=slot > at)


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
