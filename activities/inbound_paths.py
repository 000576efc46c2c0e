"""Mailbox sync's activity: load the connection, read the provider, store what
core/inbound_paths/sync.py says to import, record the path's health. One round per call."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Engine
from sqlmodel import Session
from temporalio import activity

from activities.accounts import Accounts
from activities.common import heartbeating
from contracts.inbound_paths import SYNC_MAILBOX, InboundPathsContract, SyncResult, SyncRound
from core.connections import rules as connection_rules
from core.db import get_or_fail, session_scope
from core.errors import AuthExpiredError, MailError, TransientMailError
from core.inbound_paths import sync
from core.inbound_paths.sync import Summary
from core.models import Connection, MailboxSync, utcnow
from core.statuses import (
    LIVE_STATUSES,
    OAUTH_KINDS,
    SETUP_STATUSES,
    SYNC_CHANNELS,
    InboundPath,
    PathState,
)
from providers.base import Account, OAuthProvider
from providers.mailbox import Channel, CursorExpired, MailboxReader, MailRef

log = logging.getLogger(__name__)
# Renew the channel when less than this is left: a Graph subscription (under 7 days) every
# few days, Gmail's watch (7 days) daily, as Google advises.
# Messages read at once within a page.
READS_AT_ONCE = 4
RENEW_BEFORE = {"microsoft": timedelta(days=2), "google": timedelta(days=6)}


@dataclass
class _Plan:
    """What a round knows before it reads (loaded in one short transaction)."""

    stop: bool = False
    idle: str = ""  # why not to read now (a setup not yet activated, consent missing)
    kind: str = ""
    channel: str = ""
    company_id: uuid.UUID | None = None
    account: Account | None = None
    cursor: str = ""
    since: datetime | None = None
    subscription: Channel | None = None
    # Reading as the application (an admin's grant, scoped to this mailbox), not as the user.
    application: bool = False
    mailbox: str = ""
    ever_read: bool = False
    # A shared mailbox read with the signed-in user's delegated grant (Mail.Read.Shared).
    shared: bool = False


@dataclass
class _Progress:
    stored: list[str] = field(default_factory=list)
    newest: datetime | None = None


class InboundPathsActivities(InboundPathsContract):
    def __init__(self, engine: Engine, accounts: Accounts) -> None:
        self._engine = engine
        self._accounts = accounts
        self._settings = accounts.settings

    @activity.defn(name=SYNC_MAILBOX)
    async def sync_mailbox(self, input: SyncRound) -> SyncResult:
        plan = await asyncio.to_thread(self._plan, input)
        if plan.stop:
            return SyncResult(PathState.OFF, stop=True)
        if plan.idle:
            return SyncResult(plan.idle)
        assert plan.account is not None
        provider = self._accounts.oauth(plan.kind)
        if plan.shared:
            reader = provider.reader(plan.mailbox, delegate=plan.account.mailbox)
        else:
            reader = provider.reader(plan.mailbox if plan.application else None)
        progress = _Progress()
        try:
            token = await self._token(provider, plan)
            await self._keep_channel(input, plan, reader, token)
            # Heartbeats go on while a slow provider answers: a worker that dies is noticed
            # within the heartbeat timeout, and the round is read again elsewhere.
            more = await heartbeating(self._read(input, plan, reader, token, progress))
        except AuthExpiredError as err:
            if plan.application and not plan.ever_read:
                # Neither the user's grant nor (yet) an administrator's: wait for either.
                await asyncio.to_thread(self._waiting, input)
                return SyncResult(PathState.WAITING_FOR_CONSENT)
            tell = await asyncio.to_thread(self._failed, input, str(err), True)
            return SyncResult(PathState.FAILING, progress.stored, tell_admins=tell)
        except TransientMailError as err:
            tell = await asyncio.to_thread(self._failed, input, str(err), False)
            wait = err.retry_after.total_seconds() if err.retry_after else None
            return SyncResult(
                PathState.ACTIVE, progress.stored, tell_admins=tell, wait_seconds=wait
            )
        except MailError as err:
            tell = await asyncio.to_thread(self._failed, input, str(err), False)
            return SyncResult(PathState.ACTIVE, progress.stored, tell_admins=tell)
        await asyncio.to_thread(self._succeeded, input, len(progress.stored), progress.newest)
        return SyncResult(PathState.ACTIVE, progress.stored, more=more)

    # -- before reading ------------------------------------------------------------------------

    def _plan(self, input: SyncRound) -> _Plan:
        with session_scope(self._engine) as session:
            connection = session.get(Connection, uuid.UUID(input.connection_id))
            if connection is None or connection.kind not in OAUTH_KINDS:
                return _Plan(stop=True)
            on = InboundPath.MAILBOX_SYNC in (connection.inbound_paths or [])
            if not on or not (
                connection.status in LIVE_STATUSES or connection.status in SETUP_STATUSES
            ):
                row = session.get(MailboxSync, connection.id)
                if row is not None and row.state != PathState.OFF:
                    row.state, row.reason = PathState.OFF, None
                    session.add(row)
                return _Plan(stop=True)
            row = sync.sync_row(session, connection)
            provider = self._accounts.oauth(connection.kind)
            # Without the user's read grant, an administrator's application grant may do.
            application = not provider.reads(connection.granted_scopes or [])
            if application and not provider.application_read:
                sync.waiting_for_consent(session, connection, row)
                return _Plan(idle=PathState.WAITING_FOR_CONSENT)
            if connection.status not in LIVE_STATUSES:
                return _Plan(idle=PathState.CHECKING)  # reads once the connection is active
            since = row.resync_since
            if not row.cursor and since is None:
                since = row.resync_since = utcnow() - timedelta(days=input.resync_days)
                session.add(row)
            subscription = None
            if row.subscription_id and row.channel_expires_at and not input.new_channel:
                subscription = Channel(row.subscription_id, row.channel_expires_at)
            return _Plan(
                kind=connection.kind,
                channel=SYNC_CHANNELS[connection.kind],
                company_id=connection.company_id,
                account=self._accounts.account(connection),
                cursor=row.cursor or "",
                since=since,
                subscription=subscription,
                application=application,
                mailbox=connection_rules.mailbox_to_read(connection),
                ever_read=row.last_success_at is not None,
                shared=not application and connection_rules.mailbox_mode(connection) == "shared",
            )

    async def _token(self, provider: OAuthProvider, plan: _Plan) -> str:
        account = plan.account
        assert account is not None
        if plan.application:
            return await asyncio.to_thread(provider.application_token, account.secret)
        token, renewed = await asyncio.to_thread(provider.refresh, account.secret, True)
        if renewed:
            await asyncio.to_thread(account.renewed, renewed)
        return token

    def _waiting(self, input: SyncRound) -> None:
        with session_scope(self._engine) as session:
            connection = get_or_fail(session, Connection, input.connection_id)
            sync.waiting_for_consent(session, connection, sync.sync_row(session, connection))

    async def _keep_channel(
        self, input: SyncRound, plan: _Plan, reader: MailboxReader, token: str
    ) -> None:
        """A subscription (Graph) or watch (Gmail) that notifies us of new mail, renewed well
        before it expires. Without one, the poll timer still reads: a failure here is logged
        and left to the next round."""
        if plan.kind == "microsoft" and not self._settings.graph_notifications:
            return
        if plan.shared:  # Graph notifies no delegated reader of a shared mailbox: it polls
            return
        if plan.kind == "google" and not self._settings.gmail_pubsub_topic:
            return
        current = plan.subscription
        due = current is None or input.renew_channel
        if current is not None and current.expires_at - utcnow() < RENEW_BEFORE[plan.kind]:
            due = True
        if not due:
            return
        secret = ""
        try:
            if current is not None:
                try:
                    fresh = await reader.renew_channel(token, current)
                except CursorExpired:
                    current = None
            if current is None:
                if plan.kind == "microsoft":
                    secret = secrets.token_urlsafe(48)  # clientState: at most 128 characters
                    target = self._settings.graph_notification_url()
                else:
                    target = self._settings.gmail_pubsub_topic
                fresh = await reader.open_channel(token, target, secret)
        except (TransientMailError, CursorExpired) as err:
            log.warning(
                "mailbox sync %s: notifications not renewed (%s)",
                input.connection_id,
                type(err).__name__,
            )
            return
        await asyncio.to_thread(self._save_channel, input.connection_id, fresh, secret)

    def _save_channel(self, connection_id: str, channel: Channel, secret: str) -> None:
        with session_scope(self._engine) as session:
            row = get_or_fail(session, MailboxSync, connection_id)
            row.subscription_id = channel.id if row.provider == "microsoft" else None
            row.channel_expires_at = channel.expires_at
            if secret:
                row.client_state_hash = hashlib.sha256(secret.encode()).hexdigest()
            row.updated_at = utcnow()
            session.add(row)

    # -- reading -------------------------------------------------------------------------------

    async def _read(
        self,
        input: SyncRound,
        plan: _Plan,
        reader: MailboxReader,
        token: str,
        progress: _Progress,
    ) -> bool:
        """Pages until the mailbox has nothing new, or the round's page limit (True: more)."""
        cursor, since = plan.cursor, plan.since or utcnow()
        for _ in range(input.page_limit):
            try:
                page = await reader.changes(token, cursor, since)
            except CursorExpired:
                # The provider forgot the cursor: read the last days again, bounded, with no
                # duplicates (imports are known by the provider's id).
                since = utcnow() - timedelta(days=input.resync_days)
                await asyncio.to_thread(self._restart, input.connection_id, since)
                cursor = ""
                continue
            ids = [ref.id for ref in page.refs]
            fresh = await asyncio.to_thread(self._unknown, plan, ids)
            progress.stored += await asyncio.to_thread(self._unrouted, plan, ids)
            wanted = [ref for ref in page.refs if ref.id in fresh]
            await self._import_all(input, plan, reader, token, wanted, progress)
            # Only now, with the page's messages stored, does the cursor move past them.
            cursor = page.cursor
            await asyncio.to_thread(self._save_cursor, input.connection_id, cursor)
            activity.heartbeat()
            if page.done:
                return False
        return True

    async def _import_all(
        self,
        input: SyncRound,
        plan: _Plan,
        reader: MailboxReader,
        token: str,
        refs: list[MailRef],
        progress: _Progress,
    ) -> None:
        """A few at a time (Exchange Online serves 4 concurrent requests per mailbox)."""
        slots = asyncio.Semaphore(READS_AT_ONCE)

        async def one(ref: MailRef) -> None:
            async with slots:
                await self._import(input, plan, reader, token, ref, progress)

        await asyncio.gather(*(one(ref) for ref in refs))

    async def _import(
        self,
        input: SyncRound,
        plan: _Plan,
        reader: MailboxReader,
        token: str,
        ref: MailRef,
        progress: _Progress,
    ) -> None:
        summary = await reader.summary(token, ref)
        if not await asyncio.to_thread(self._wanted, input, summary):
            return  # not for Recruitmail: nothing of it is kept
        raw = await reader.raw(token, ref)
        stored = await asyncio.to_thread(
            self._store, input.connection_id, plan.channel, ref, raw, summary
        )
        if stored:
            progress.stored.append(stored)
        received = summary.received_at or ref.received_at
        if received and (progress.newest is None or received > progress.newest):
            progress.newest = received

    def _unknown(self, plan: _Plan, ids: list[str]) -> set[str]:
        assert plan.company_id is not None
        with Session(self._engine) as session:
            return set(ids) - sync.known(session, plan.company_id, plan.channel, ids)

    def _unrouted(self, plan: _Plan, ids: list[str]) -> list[str]:
        assert plan.company_id is not None
        with Session(self._engine) as session:
            return sync.unrouted(session, plan.company_id, plan.channel, ids)

    def _wanted(self, input: SyncRound, summary: Summary) -> bool:
        with Session(self._engine) as session:
            connection = get_or_fail(session, Connection, input.connection_id)
            return sync.wanted(
                session, connection, summary, input.closed_application_grace, utcnow()
            )

    def _store(
        self, connection_id: str, channel: str, ref: MailRef, raw: bytes, summary: Summary
    ) -> str:
        with session_scope(self._engine) as session:
            connection = get_or_fail(session, Connection, connection_id)
            row = sync.store(session, connection, channel, ref.id, raw, sync.sender(summary))
            return str(row.id) if row is not None else ""

    def _save_cursor(self, connection_id: str, cursor: str) -> None:
        with session_scope(self._engine) as session:
            row = get_or_fail(session, MailboxSync, connection_id)
            row.cursor = cursor
            row.updated_at = utcnow()
            session.add(row)

    def _restart(self, connection_id: str, since: datetime) -> None:
        with session_scope(self._engine) as session:
            row = get_or_fail(session, MailboxSync, connection_id)
            row.cursor, row.resync_since = None, since
            session.add(row)

    # -- health --------------------------------------------------------------------------------

    def _succeeded(self, input: SyncRound, imported: int, newest: datetime | None) -> None:
        with session_scope(self._engine) as session:
            connection = get_or_fail(session, Connection, input.connection_id)
            row = sync.sync_row(session, connection)
            sync.succeeded(session, connection, row, imported, newest, utcnow())

    def _failed(self, input: SyncRound, reason: str, at_once: bool) -> bool:
        with session_scope(self._engine) as session:
            connection = get_or_fail(session, Connection, input.connection_id)
            row = sync.sync_row(session, connection)
            if at_once:
                reason = (
                    f"{reason} Reconnect the connection (POST /v1/connections/{connection.id}/"
                    "reconnect) so Recruitmail can read the mailbox again."
                )
            return sync.failed(
                session, connection, row, reason, utcnow(), input.stale_after, at_once=at_once
            )

    @property
    def all(self) -> list:
        return [self.sync_mailbox]
