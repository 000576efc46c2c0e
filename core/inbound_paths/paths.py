"""The ways replies to a custom address reach Recruitmail (core.statuses.InboundPath), each
path's state, and the rules for telling a company's admins when one stops working.

- `redirect`: the company's mail system redirects the address to its hosted address. It is
  active while the round trip's check message comes back; checked again on demand and daily.
- `mailbox_sync`: Recruitmail reads the connected mailbox (Microsoft or Google sign-in only).
- `hosted_reply_to`: outbound mail carries Reply-To with a conversation's token address on the
  hosted domain (core/inbound/tokens.py); it needs nobody's settings.

A path that stops working while its connection is live emits `connection.inbound_path_changed`
and tells the admins once (until it works again). Sending is never interrupted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session

from core import events
from core.events import EventType
from core.models import Connection, MailboxSync, utcnow
from core.statuses import (
    LIVE_STATUSES,
    OAUTH_KINDS,
    InboundPath,
    PathState,
    RedirectStatus,
)

PATHS = tuple(p.value for p in InboundPath)
# The permission that reads a mailbox, by connection kind (the providers ask for these).
READ_SCOPES = {
    "microsoft": "Mail.Read",
    "google": "https://www.googleapis.com/auth/gmail.readonly",
}
READ_PERMISSION = {
    "microsoft": "Mail.Read (read the mailbox)",
    "google": "gmail.readonly (read the mailbox)",
}


def consent_reason(connection: Connection) -> str:
    """What the sync path waits for, and who can give it."""
    permission = READ_PERMISSION.get(connection.kind, "the read permission")
    reason = (
        f"Waiting for the permission {permission}: the mailbox's user signs in through the "
        f"link PUT /v1/connections/{connection.id}/inbound answered with (where the "
        "organisation requires it, an administrator approves it first)."
    )
    if connection.kind == "microsoft":
        reason += (
            " Or an administrator grants Recruitmail the application permission Mail.Read, "
            "scoped to this mailbox with Exchange's RBAC for Applications (docs/connections.md)."
        )
    return reason + " Sending goes on meanwhile."


def reads(kind: str, granted: list[str]) -> bool:
    """Whether a grant includes reading the mailbox."""
    wanted = READ_SCOPES.get(kind, "").lower().rsplit("/", 1)[-1]
    return bool(wanted) and any(s.lower().rsplit("/", 1)[-1] == wanted for s in granted)


@dataclass(frozen=True)
class PathStatus:
    state: str  # a PathState
    reason: str | None = None
    checked_at: datetime | None = None
    last_sync_at: datetime | None = None
    lag_seconds: float | None = None


def paths_problem(kind: str, paths: list[str]) -> str | None:
    """Why these paths cannot be set for a connection of this kind, or None."""
    if not paths:
        return "paths: at least one way in; without any, candidates' replies are lost"
    unknown = [p for p in paths if p not in PATHS]
    if unknown:
        return f"paths: unknown {', '.join(unknown)}; known: {', '.join(PATHS)}"
    if InboundPath.MAILBOX_SYNC in paths and kind not in OAUTH_KINDS:
        return (
            "mailbox_sync reads the mailbox through a Microsoft or Google sign-in, and this is "
            "an SMTP connection. Use hosted_reply_to (replies come to a Recruitmail address, no "
            "setting needed) or redirect; or connect the mailbox with Microsoft or Google."
        )
    return None


def redirect_status(connection: Connection) -> PathStatus:
    state = {
        RedirectStatus.VERIFIED: PathState.ACTIVE,
        RedirectStatus.WAITING: PathState.CHECKING,
        RedirectStatus.NOT_SEEN: PathState.FAILING,
        RedirectStatus.BLOCKED: PathState.FAILING,
    }.get(RedirectStatus(connection.redirect_status), PathState.CHECKING)
    if connection.redirect_status == RedirectStatus.NOT_CHECKED:
        reason = connection.redirect_detail or "Not checked yet: test the connection."
        return PathStatus(PathState.FAILING, reason)
    return PathStatus(state, connection.redirect_detail, connection.redirect_checked_at)


def sync_status(
    connection: Connection, sync: MailboxSync | None, stale_after: timedelta, now: datetime
) -> PathStatus:
    """The sync path's state as the API shows it: waiting for the read permission until it is
    granted; an active sync that has not succeeded for `stale_after` is failing, even before
    its run notices."""
    unread = sync is None or sync.state in (PathState.OFF, PathState.WAITING_FOR_CONSENT)
    if not reads(connection.kind, connection.granted_scopes or []) and unread:
        return PathStatus(PathState.WAITING_FOR_CONSENT, consent_reason(connection))
    if sync is None or sync.state == PathState.OFF:
        return PathStatus(PathState.CHECKING, "Mailbox sync is starting.")
    state, reason = sync.state, sync.reason
    since = sync.last_success_at or sync.created_at
    if state == PathState.ACTIVE and now - since > stale_after:
        state = PathState.FAILING
        reason = f"No successful read since {since:%Y-%m-%d %H:%M} UTC."
    return PathStatus(state, reason, sync.last_success_at, sync.last_success_at, sync.lag_seconds)


def statuses(
    connection: Connection,
    sync: MailboxSync | None,
    stale_after: timedelta = timedelta(hours=1),
    now: datetime | None = None,
) -> dict[str, PathStatus]:
    found: dict[str, PathStatus] = {}
    for path in connection.inbound_paths:
        if path == InboundPath.REDIRECT:
            found[path] = redirect_status(connection)
        elif path == InboundPath.MAILBOX_SYNC:
            found[path] = sync_status(connection, sync, stale_after, now or utcnow())
        elif path == InboundPath.HOSTED_REPLY_TO:
            found[path] = PathStatus(PathState.ACTIVE)
    return found


def redirect_failing(session: Session, connection: Connection) -> bool:
    """The redirect of a live connection stopped working (not seen, or blocked): on the
    change, an event, and True: the admins are to be told (once, until it works again)."""
    if connection.status not in LIVE_STATUSES or InboundPath.REDIRECT not in (
        connection.inbound_paths or []
    ):
        return False
    if connection.redirect_told_at is not None:
        return False  # failing already: told when it started
    changed(
        session, connection, InboundPath.REDIRECT, PathState.FAILING, connection.redirect_detail
    )
    connection.redirect_told_at = utcnow()
    session.add(connection)
    return True


def redirect_working(session: Session, connection: Connection) -> None:
    """The redirect works (again): a failure told before is over."""
    if connection.redirect_told_at is None:
        return
    connection.redirect_told_at = None
    session.add(connection)
    changed(session, connection, InboundPath.REDIRECT, PathState.ACTIVE, connection.redirect_detail)


def changed(
    session: Session, connection: Connection, path: str, state: str, reason: str | None
) -> None:
    events.emit(
        session,
        connection.company_id,
        EventType.CONNECTION_INBOUND_PATH_CHANGED,
        {
            "connection_id": str(connection.id),
            "path": path,
            "state": state,
            "reason": events.scrub(reason),
        },
    )
