"""Activities of SendMessage: load the message by id, call core/send (the sender, the MIME, the
lifecycle) or the provider, record. Database steps are sync (run as local activities in a
thread pool); delivery is async. None of them puts a subject or a body in history."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from sqlmodel import Session
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.accounts import Accounts
from activities.common import UNSENDABLE, heartbeating, to_application_error, unsendable
from contracts.send import (
    DELIVER_MESSAGE,
    PREPARE_MESSAGE,
    RECORD_OUTCOME,
    RELEASE_MESSAGE,
    DeliveryResult,
    MessageRef,
    RecordOutcomeInput,
    Release,
    SendContract,
    SenderChoice,
    SendMessageResult,
)
from core import attachments as files_at_rest
from core import events, throttle
from core.db import get_or_fail, session_scope
from core.errors import (
    AuthExpiredError,
    MailError,
    QuotaExceeded,
    TransientMailError,
    for_recruiter,
)
from core.mail import Composed, files_boundary
from core.models import Message
from core.privacy import NOT_SENT_ERASED
from core.send import compose, lifecycle, schedule, senders
from core.send.compose import SenderReplaced
from core.settings import Settings
from core.statuses import MessageStatus
from core.throttle import Rate
from providers.base import MailProvider, Outgoing, OutgoingFile

# First attempts begun and not yet taken by their delivery, at most (SendActivities._begun).
_BEGUN_KEPT = 1024


def _choice(sender: senders.Chosen) -> SenderChoice:
    return SenderChoice(**asdict(sender))


@dataclass(frozen=True)
class _Attempt:
    """An attempt under way: the message to send, how, and what marking it sent needs."""

    mail: Outgoing
    transport: str
    connection_id: uuid.UUID | None
    going: lifecycle.Going


class SendActivities(SendContract):
    def __init__(self, engine: Engine, settings: Settings, accounts: Accounts) -> None:
        self._engine = engine
        self._settings = settings
        self._accounts = accounts
        self.box = accounts.box
        # The first attempt, begun by prepare_message in its own transaction, for the delivery
        # that follows it in the same workflow task on this worker (a local activity): it
        # reads nothing again. A delivery that finds none (a retry, a replay on another
        # worker) begins its attempt itself. Bounded: a run that never delivers leaves one.
        self._begun: OrderedDict[str, _Attempt] = OrderedDict()

    def _compose(self, session: Session, message: Message, sender: senders.Chosen) -> Composed:
        try:
            return compose.compose_into(session, self.box, self._settings, message, sender)
        except UNSENDABLE as exc:
            raise unsendable(exc) from exc

    # -- local activities (sync, thread pool) --------------------------------------------

    @activity.defn(name=PREPARE_MESSAGE)
    def prepare_message(self, input: MessageRef) -> SenderChoice:
        """Resolve the sender and compose the MIME once, and begin the first attempt, in one
        transaction (a message already composed, by an earlier attempt, keeps its bytes)."""
        with session_scope(self._engine) as session:
            message = get_or_fail(session, Message, input.message_id)
            _rows = compose.rows_of(session, message)  # held: the steps below read them again
            sender = senders.choose(session, self._settings, message)
            if compose.not_going_out(session, message):
                return _choice(compose.without_name(sender))  # delivery ends it `cancelled`
            if message.raw_mime is not None:  # composed by an earlier attempt: as it was
                choice = SenderChoice(
                    address=message.from_address,
                    name="",
                    transport=message.transport or "platform",
                    source=sender.source,
                    connection_id=str(message.connection_id) if message.connection_id else None,
                )
            else:
                self._compose(session, message, sender)
                choice = _choice(compose.without_name(sender))
            begun = None
            if message.status not in (MessageStatus.SENT, MessageStatus.CANCELLED):
                lifecycle.begin_attempt(message)
                session.add(message)
                begun = self._attempt(session, message)
        if begun is not None:  # committed: the delivery may take it
            self._begun[input.message_id] = begun
            while len(self._begun) > _BEGUN_KEPT:
                self._begun.popitem(last=False)
        return choice

    def recompose(self, message_id: str) -> _Attempt:
        """Composed again for the sender in effect now (core/send/compose.recompose)."""
        with session_scope(self._engine) as session:
            message = get_or_fail(session, Message, message_id)
            try:
                compose.recompose(session, self.box, self._settings, message)
            except UNSENDABLE as exc:
                raise unsendable(exc) from exc
            return self._attempt(session, message)

    def _attempt(self, session: Session, message: Message) -> _Attempt:
        """The composed message as its delivery sends it, from its row."""
        if message.raw_mime is None:
            raise ApplicationError(f"message {message.id} was never composed", non_retryable=True)
        mail = Outgoing(
            mime=message.raw_mime,
            envelope_from=message.from_address,
            envelope_to=list(message.to_addresses),
            custom_id=str(message.id),
            company_id=str(message.company_id),
        )
        return _Attempt(
            self._with_files(session, message, mail),
            message.transport or "platform",
            message.connection_id,
            lifecycle.going(session, message),
        )

    def _with_files(self, session: Session, message: Message, mail: Outgoing) -> Outgoing:
        """The message's files, when it was composed without them: read from storage a chunk
        at a time as the provider sends them (core/attachments.stream)."""
        stored = compose.files_of(session, message)
        if not stored:
            return mail
        engine, box = self._engine, self.box

        def reader(file: compose.StoredFile) -> Callable[[], AsyncIterator[bytes]]:
            return lambda: files_at_rest.stream(
                engine, box, file.id, file.chunks, file.content, file.sealed
            )

        return replace(
            mail,
            files=tuple(
                OutgoingFile(f.filename, f.content_type, f.size, reader(f)) for f in stored
            ),
            files_boundary=files_boundary(message.id),
        )

    @activity.defn(name=RECORD_OUTCOME)
    def record_outcome(self, input: RecordOutcomeInput) -> SendMessageResult:
        with session_scope(self._engine) as session:
            message = get_or_fail(session, Message, input.message_id)
            # The row holds the last attempt's whole reason; the input, from history, has its
            # addresses masked.
            reason = message.error or input.error or "The message could not be delivered."
            reason = reason.removesuffix(" Retrying.")
            if input.retries_exhausted and input.retry_total is not None:
                reason = lifecycle.gave_up(message.attempts, input.retry_total, reason)
            status, error = lifecycle.outcome(session, message, input.status, reason)
            # The result enters history: no address in it.
            return SendMessageResult(status=status, error=events.scrub(error))

    # -- delivery (async, talks to the provider) --------------------------------------------

    @activity.defn(name=DELIVER_MESSAGE)
    async def deliver_message(self, input: MessageRef) -> DeliveryResult:
        message_id = input.message_id
        attempt = self._begun.pop(message_id, None)
        if attempt is None:
            state = await asyncio.to_thread(self._begin_attempt, message_id)
            if state is None:
                return DeliveryResult(already_sent=True)
            if isinstance(state, str):  # "cancelled"
                return DeliveryResult(cancelled=True)
            attempt = state
        accounts = self._accounts
        mail, connection_id = attempt.mail, attempt.connection_id
        try:
            try:
                if attempt.transport == "platform":  # built once, from settings: no thread hop
                    provider, account = accounts.platform()
                else:
                    provider, account = await asyncio.to_thread(
                        accounts.sender_for, attempt.transport, connection_id
                    )
            except SenderReplaced:
                attempt = await asyncio.to_thread(self.recompose, message_id)
                mail, connection_id = attempt.mail, attempt.connection_id
                provider, account = await asyncio.to_thread(
                    accounts.sender_for, attempt.transport, connection_id
                )
            if mail.files and not provider.takes_files(account):
                mail = await mail.whole()  # its files read from storage into the MIME
            await self._admit(provider, connection_id, mail)
            provider_id = await heartbeating(provider.send(account, mail))
        except MailError as err:
            if isinstance(err, AuthExpiredError) and connection_id is not None:
                err = await asyncio.to_thread(accounts.needs_reauth, connection_id, err)
            await asyncio.to_thread(self._note_failure, message_id, err)
            raise to_application_error(err) from None
        await asyncio.to_thread(lifecycle.sent, self._engine, attempt.going, provider_id)
        return DeliveryResult(provider_message_id=provider_id)

    async def _admit(
        self, provider: MailProvider, connection_id: uuid.UUID | None, mail: Outgoing
    ) -> None:
        """A mailbox with a 24-hour quota (Google, Exchange) counts single sends too: one that
        would overrun it waits for the window to reopen (a deferral, never a failure)."""
        rate = (
            provider.rate()  # the platform's: from settings, no database read
            if connection_id is None
            else await asyncio.to_thread(self._accounts.rate_for, provider, connection_id)
        )
        if not rate.windowed:
            return
        quota = Rate(0.0, rate.daily_cap, rate.daily_recipients)
        key = f"connection:{connection_id}" if connection_id else "platform"
        until = await asyncio.to_thread(
            throttle.admit, self._engine, key, quota, len(mail.envelope_to)
        )
        if until is not None:
            when = datetime.fromtimestamp(until, UTC).strftime("%d %b %Y %H:%M UTC")
            raise QuotaExceeded(
                "The sending mailbox's 24-hour quota is spent (messages or recipients, as its "
                f"provider counts them); the message goes at {when}, when the window reopens.",
                retry_after=timedelta(seconds=max(1.0, until - time.time())),
            )

    def _begin_attempt(self, message_id: str) -> _Attempt | str | None:
        """The attempt begun, with the message to send; None when it was sent already, or
        "cancelled"."""
        with session_scope(self._engine) as session:
            message = get_or_fail(session, Message, message_id)
            if message.status == MessageStatus.SENT:
                return None
            if message.status == MessageStatus.CANCELLED:
                return "cancelled"
            if compose.not_going_out(session, message):
                # Queued while the erasure began: it never goes out.
                lifecycle.cancelled(session, message, NOT_SENT_ERASED)
                return "cancelled"
            lifecycle.begin_attempt(message)
            session.add(message)
            return self._attempt(session, message)

    def _note_failure(self, message_id: str, err: MailError) -> None:
        with session_scope(self._engine) as session:
            message = get_or_fail(session, Message, message_id)
            text = for_recruiter(err)
            if isinstance(err, TransientMailError):
                text += " Retrying."
            lifecycle.attempt_failed(message, text)
            session.add(message)

    @activity.defn(name=RELEASE_MESSAGE)
    def release_message(self, input: MessageRef) -> Release:
        with session_scope(self._engine) as session:
            state, send_at = schedule.release(session, uuid.UUID(input.message_id))
            return Release(state=state, send_at=send_at)

    @property
    def local(self) -> list:
        return [
            self.release_message,
            self.prepare_message,
            self.record_outcome,
        ]

    @property
    def all(self) -> list:
        return [*self.local, self.deliver_message]
