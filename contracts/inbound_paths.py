"""mailbox-sync-{connection id}: reading a connected mailbox for replies
(core/inbound_paths/sync.py), woken by the provider's notifications (through the API) or by
its poll timer."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import activity

SYNC_MAILBOX = "sync-mailbox"
# Signals the run takes (the API sends them; they carry no mail).
NOTIFY = "notify"  # a notification arrived, or the connection's grant changed
STOP = "stop"  # the path was turned off, or the connection ended


@dataclass
class SyncInput:
    connection_id: str
    company_id: str
    poll_interval: timedelta = timedelta(minutes=5)
    stale_after: timedelta = timedelta(hours=1)
    resync_days: int = 7
    closed_application_grace: timedelta = timedelta(days=14)


@dataclass
class Nudge:
    """Why the run was woken: `change` (new mail), `missed` (notifications were lost: read),
    `reauthorize` (renew the subscription), `removed` (create a new one), `grant` (the
    connection's sign-in changed)."""

    reason: str = "change"


@dataclass
class SyncRound:
    connection_id: str
    stale_after: timedelta = timedelta(hours=1)
    resync_days: int = 7
    closed_application_grace: timedelta = timedelta(days=14)
    # Renew the notification channel now (a lifecycle notification asked), or make a new one.
    renew_channel: bool = False
    new_channel: bool = False
    # Pages per round: the round's imports are routed when it returns (the next round follows
    # at once while pages are left).
    page_limit: int = 2


@dataclass
class SyncResult:
    """Ids and states only: nothing of the mail."""

    state: str  # a core.statuses.PathState
    inbound_ids: list[str] = field(default_factory=list)
    more: bool = False  # pages are left: read again at once
    stop: bool = False  # the path is off or the connection ended: the run ends
    tell_admins: bool = False
    wait_seconds: float | None = None  # the provider asked to wait (Retry-After)


class InboundPathsContract:
    @activity.defn(name=SYNC_MAILBOX)
    async def sync_mailbox(self, input: SyncRound) -> SyncResult:
        """Read the mailbox's new messages, page by page: import the wanted ones (stored
        before the cursor moves past them), keep the notification channel alive, and record
        the path's health."""
        raise NotImplementedError
