"""Bulk sends' rules that need no database or provider: when a message put off by its
recipient's server is tried again, and when it stops being tried."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class Deferral:
    """What becomes of a message its recipient's server put off (a 4xx answer)."""

    retry_at: datetime | None  # None: its retries ran out, it fails
    reason: str


def defer(
    reason: str,
    *,
    attempts: int,
    since: datetime | None,
    now: datetime,
    initial: timedelta,
    maximum: timedelta,
    total: timedelta,
) -> Deferral:
    """The message's next try, on its own exponential backoff (as a single send's), within
    `total` of the first time it was put off; or, past that, the reason it fails."""
    first = since or now
    wait = min(maximum, initial * (2 ** max(attempts - 1, 0)))
    if now + wait - first > total:
        return Deferral(
            None,
            f"Gave up after {attempts} attempts over {_describe(now - first)}. "
            f"Last problem: {reason}",
        )
    at = now + wait
    return Deferral(at, f"{reason} Retrying after {at:%H:%M:%S} UTC.")


def _describe(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} hours"
    if seconds >= 60:
        return f"{seconds // 60} minutes"
    return f"{seconds} seconds"
