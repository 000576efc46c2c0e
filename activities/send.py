"""Activities of SendMessage. DB steps are sync (run as local activities in a thread pool);
delivery is async. All of them read the subject and body from the database, by message id."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from sqlmodel import Session, col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.accounts import Accounts
from activities.common import heartbeating, to_application_error
from contracts.send import (
    COMPOSE_MESSAGE,
    DELIVER_MESSAGE,
    PREPARE_MESSAGE,
    RECORD_OUTCOME,
    RELEASE_MESSAGE,
    RESOLVE_SENDER,
    SUPPRESSED,
    ComposeInput,
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
from core.db import RowMissing, get_or_fail, session_scope
from core.deliverability import suppression, unsubscribe
from core.errors import (
    AuthExpiredError,
    MailError,
    QuotaExceeded,
    TransientMailError,
    for_recruiter,
)
from core.events import EventType
from core.inbound import tokens
from core.mail import bulk_boundary, compose
from core.models import (
    Attachment,
    BulkJob,
    Candidate,
    Company,
    Connection,
    LegalEntity,
    Message,
    SenderNameMode,
    User,
    utcnow,
)
from core.privacy import NOT_SENT_ERASED
from core.security import SecretBox
from core.send import schedule
from core.senders import effective_sender
from core.settings import Settings
from core.statuses import ConnectionStatus, MessageStatus, SuppressionReason
from core.templates import invitations
from core.throttle import Rate
from providers.base import Account, MailProvider, Outgoing


def _describe(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds >= 3600:
        return f"{seconds / 3600:g} hours"
    if seconds >= 60:
        return f"{seconds // 60} minutes"
    return f"{seconds} seconds"


ReplyTo = Callable[[Session, Message, SenderChoice], str | None]


class SenderReplaced(Exception):
    """The connection a message was composed for no longer sends for its scope."""


def _not_going_out(session: Session, message: Message) -> bool:
    """Cancelled, or its candidate's erasure has begun: never composed (the erasure may have
    removed its text already)."""
    if message.status == MessageStatus.CANCELLED:
        return True
    candidate = session.get(Candidate, message.candidate_id) if message.candidate_id else None
    return candidate is not None and candidate.erasure_requested_at is not None


def _for_history(sender: SenderChoice) -> SenderChoice:
    """The sender as the workflow records it: without the display name, which may be an
    employee's (personal data stays in the database; the MIME and the row carry it)."""
    return replace(sender, name="")


def _compose_into(
    session: Session,
    box: SecretBox,
    settings: Settings,
    message: Message,
    sender: SenderChoice,
    reply_to: ReplyTo,
) -> Outgoing:
    """Compose the message's MIME from `sender` and store it with the sender on the row."""
    candidate = session.get(Candidate, message.candidate_id) if message.candidate_id else None
    if candidate is None:
        raise RowMissing(f"The candidate of message {message.id} was deleted.")
    listed = suppression.find(session, message.company_id, candidate.email)
    # Refused before any attempt, with the reason and the way out; an opt-out from bulk mail
    # leaves single messages (about an application: transactional) going.
    if listed is not None and listed.reason != SuppressionReason.UNSUBSCRIBED:
        raise ApplicationError(suppression.explain(listed), type=SUPPRESSED, non_retryable=True)
    calendar = None
    if message.invitation:  # an interview invitation: the organizer is the sender
        calendar = invitations.calendar_for(
            message.invitation,
            summary=message.subject,
            organizer=invitations.Party(sender.address, sender.name),
            attendee=invitations.Party(candidate.email, candidate.name),
        )
    files = None
    if message.has_attachments:  # uploads or a template's files, copied when it was queued
        files = [
            (a.filename, a.content_type, files_at_rest.opened(box, a.id, a.content, a.sealed))
            for a in session.exec(
                select(Attachment)
                .where(Attachment.message_id == message.id)
                .order_by(col(Attachment.filename), col(Attachment.id))
            )
        ]
    # A bulk send's files are the job's, added as each message is sent (core/mail.splice).
    job = session.get(BulkJob, message.bulk_job_id) if message.bulk_job_id else None
    shared_files = job is not None and bool(job.files)
    extra = None
    if job is not None and job.unsubscribe:  # composed again: as bulk planning did, with
        company = get_or_fail(session, Company, message.company_id)  # one-click unsubscribe
        extra = {
            name: " ".join(folded.split())  # the email package folds it again
            for name, folded in unsubscribe.headers_for(
                box,
                settings.public_url,
                settings.hosted_address(company.slug),
                company.id,
                candidate.id,
            )
        }
    _, composed = compose(
        attachments=files,
        files_later=shared_files,
        boundary=bulk_boundary(job.id) if job is not None and shared_files else None,
        extra_headers=extra,
        calendar=calendar,
        reply_to=reply_to(session, message, sender),
        from_address=sender.address,
        from_name=sender.name,
        to_address=candidate.email,
        to_name=candidate.name,
        subject=message.subject,
        text=message.text,
        html=message.html,
        message_id=message.message_id_header,
        date=message.created_at,
        in_reply_to=message.in_reply_to,
        references=message.references,
    )
    message.raw_mime = composed.mime
    message.from_address = sender.address
    message.from_name = sender.name
    message.to_addresses = composed.envelope_to
    message.transport = sender.transport
    message.connection_id = uuid.UUID(sender.connection_id) if sender.connection_id else None
    if message.status == MessageStatus.QUEUED:
        message.status = MessageStatus.SENDING
    message.updated_at = utcnow()
    session.add(message)
    return Outgoing.of(composed, str(message.id), str(message.company_id))


class SendActivities(SendContract):
    def __init__(self, engine: Engine, settings: Settings, accounts: Accounts) -> None:
        self._engine = engine
        self._settings = settings
        self._accounts = accounts
        self.box = accounts.box

    def _reply_to(self, session: Session, message: Message, sender: SenderChoice) -> str | None:
        """The conversation's reply-to token address, when this sender carries one."""
        if message.candidate_id is None:
            return None
        company = get_or_fail(session, Company, message.company_id)
        return tokens.reply_to_for(
            session,
            key=self.box.signing_keys()[0],
            hosted=self._settings.hosted_address(company.slug),
            company_id=message.company_id,
            candidate_id=message.candidate_id,
            connection_id=uuid.UUID(sender.connection_id) if sender.connection_id else None,
        )

    # -- local activities (sync, thread pool) --------------------------------------------

    @activity.defn(name=RESOLVE_SENDER)
    def resolve_sender(self, input: MessageRef) -> SenderChoice:
        with session_scope(self._engine) as session:
            message = get_or_fail(session, Message, input.message_id)
            return _for_history(self._choose(session, message))

    def _choose(self, session: Session, message: Message) -> SenderChoice:
        """The sender in effect now: the candidate's legal entity, the company, the platform;
        named after the employee, or after the company (the legal entity, for its address)."""
        company = get_or_fail(session, Company, message.company_id)
        candidate = session.get(Candidate, message.candidate_id) if message.candidate_id else None
        entity_id = candidate.legal_entity_id if candidate else None
        sender = effective_sender(session, self._settings, company, entity_id)
        name = company.name
        mode = (
            message.sender_name_mode or company.sender_name_mode
        )  # a template's, or the company's
        if mode == SenderNameMode.EMPLOYEE and message.sender_user_id:
            user = session.get(User, message.sender_user_id)
            name = user.name if user else name
        elif sender.source == "entity" and entity_id is not None:
            entity = session.get(LegalEntity, entity_id)
            name = entity.name if entity else name
        return SenderChoice(
            address=sender.address,
            name=name,
            transport=sender.transport,
            source=sender.source,
            connection_id=str(sender.connection_id) if sender.connection_id else None,
        )

    @activity.defn(name=PREPARE_MESSAGE)
    def prepare_message(self, input: MessageRef) -> SenderChoice:
        """Resolve the sender and compose the MIME once, in one transaction (a message already
        composed, by an earlier attempt, keeps its bytes)."""
        with session_scope(self._engine) as session:
            message = get_or_fail(session, Message, input.message_id)
            sender = self._choose(session, message)
            if _not_going_out(session, message):
                return _for_history(sender)  # the delivery step ends it `cancelled`
            if message.raw_mime is not None:  # composed by an earlier attempt: as it was
                return SenderChoice(
                    address=message.from_address,
                    name="",
                    transport=message.transport or "platform",
                    source=sender.source,
                    connection_id=str(message.connection_id) if message.connection_id else None,
                )
            if message.raw_mime is None:
                try:
                    _compose_into(
                        session, self.box, self._settings, message, sender, self._reply_to
                    )
                except (ValueError, UnicodeError) as exc:
                    raise ApplicationError(
                        f"its text cannot go into an email ({exc}).",
                        type="CompositionError",
                        non_retryable=True,
                    ) from exc
            return _for_history(sender)

    @activity.defn(name=COMPOSE_MESSAGE)
    def compose_message(self, input: ComposeInput) -> None:
        """Compose the MIME once and store it, so every attempt sends the same bytes."""
        with session_scope(self._engine) as session:
            message = get_or_fail(session, Message, input.message_id)
            if message.raw_mime is not None or _not_going_out(session, message):
                return
            sender = input.sender
            if not sender.name:  # kept out of history: the name in effect now
                sender = replace(sender, name=self._choose(session, message).name)
            try:
                _compose_into(session, self.box, self._settings, message, sender, self._reply_to)
            except (ValueError, UnicodeError) as exc:
                # Text the API would refuse today (older rows, imports): no retry composes it.
                raise ApplicationError(
                    f"its text cannot go into an email ({exc}).",
                    type="CompositionError",
                    non_retryable=True,
                ) from exc

    def recompose(self, message_id: str) -> tuple[Outgoing, str, uuid.UUID | None]:
        """The connection this message was composed for was replaced, or its scope switched
        back to the platform, before it went out: compose it again, same Message-ID, for the
        sender in effect now. Its record then shows the sender it really used."""
        with session_scope(self._engine) as session:
            message = get_or_fail(session, Message, message_id)
            sender = self._choose(session, message)
            mail = _compose_into(session, self.box, self._settings, message, sender, self._reply_to)
            return mail, message.transport or "platform", message.connection_id

    @activity.defn(name=RECORD_OUTCOME)
    def record_outcome(self, input: RecordOutcomeInput) -> SendMessageResult:
        with session_scope(self._engine) as session:
            message = get_or_fail(session, Message, input.message_id)
            if message.status == MessageStatus.SENT or input.status == MessageStatus.SENT:
                # deliver-message already wrote `sent`; never downgrade a delivered message.
                message.status = MessageStatus.SENT
                message.error = None
            elif message.status == MessageStatus.CANCELLED:
                pass  # cancelled while it waited (its candidate's data is being erased)
            else:
                # The row holds the last attempt's whole reason; the input, from history, has
                # its addresses masked.
                reason = message.error or input.error or "The message could not be delivered."
                reason = reason.removesuffix(" Retrying.")
                if input.retries_exhausted and input.retry_total is not None:
                    reason = (
                        f"Gave up after {message.attempts} attempts over "
                        f"{_describe(input.retry_total)}. Last problem: {reason}"
                    )
                message.status = MessageStatus.FAILED
                message.error = reason
                events.message_event(session, message, EventType.MESSAGE_FAILED, message.error)
            message.updated_at = utcnow()
            session.add(message)
            # The result enters history: no address in it.
            return SendMessageResult(status=message.status, error=events.scrub(message.error))

    # -- delivery (async, talks to the provider) --------------------------------------------

    @activity.defn(name=DELIVER_MESSAGE)
    async def deliver_message(self, input: MessageRef) -> DeliveryResult:
        message_id = input.message_id
        state = await asyncio.to_thread(self._begin_attempt, message_id)
        if state is None:
            return DeliveryResult(already_sent=True)
        if isinstance(state, str):  # "cancelled"
            return DeliveryResult(cancelled=True)
        mail, transport_name, connection_id = state
        try:
            try:
                if transport_name == "platform":  # built once, from settings: no thread hop
                    provider, account = self._accounts.platform()
                else:
                    provider, account = await asyncio.to_thread(
                        self.sender_for, transport_name, connection_id
                    )
            except SenderReplaced:
                mail, transport_name, connection_id = await asyncio.to_thread(
                    self.recompose, message_id
                )
                provider, account = await asyncio.to_thread(
                    self.sender_for, transport_name, connection_id
                )
            await self._admit(provider, connection_id, mail)
            provider_id = await heartbeating(provider.send(account, mail))
        except MailError as err:
            if isinstance(err, AuthExpiredError) and connection_id is not None:
                err = await asyncio.to_thread(self.mark_needs_reauth, connection_id, err)
            await asyncio.to_thread(self._note_failure, message_id, err)
            raise to_application_error(err) from None
        await asyncio.to_thread(self._mark_sent, message_id, provider_id)
        return DeliveryResult(provider_message_id=provider_id)

    async def _admit(
        self, provider: MailProvider, connection_id: uuid.UUID | None, mail: Outgoing
    ) -> None:
        """A mailbox with a 24-hour quota (Google, Exchange) counts single sends too: one that
        would overrun it waits for the window to reopen (a deferral, never a failure)."""
        rate = await asyncio.to_thread(self.rate_for, provider, connection_id)
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

    def rate_for(self, provider: MailProvider, connection_id: uuid.UUID | None) -> Rate:
        """The mailbox's rate: its provider's, with the connection's own quota over it."""
        rate = provider.rate()
        if connection_id is None:
            return rate
        with Session(self._engine) as session:
            connection = session.get(Connection, connection_id)
        if connection is None:
            return rate
        return throttle.with_overrides(
            rate, connection.quota_messages_per_day, connection.quota_recipients_per_day
        )

    def sender_for(
        self, transport: str, connection_id: uuid.UUID | None
    ) -> tuple[MailProvider, Account]:
        """The provider and account a message composed for `transport` goes out through."""
        if transport == "platform":
            return self._accounts.platform()
        with session_scope(self._engine) as session:
            connection = session.get(Connection, connection_id) if connection_id else None
            if connection is None or transport != connection.kind:
                raise SenderReplaced(f"the {transport} connection no longer exists")
            if connection.status == ConnectionStatus.NEEDS_REAUTH:
                # Still the scope's sender: no silent fallback to another address.
                raise AuthExpiredError(connection.last_error or "Its credentials were refused.")
            if connection.status != ConnectionStatus.ACTIVE:
                # Replaced, or switched back to the platform: the From address is this
                # connection's, so it is composed again for the sender in effect now.
                raise SenderReplaced(f"the connection for {connection.custom_address} is off")
            return self._accounts.provider(connection.kind), self._accounts.account(connection)

    def mark_needs_reauth(
        self, connection_id: uuid.UUID, err: AuthExpiredError
    ) -> AuthExpiredError:
        """Credentials refused at send time: flag the connection, fail with a clear reason."""
        with session_scope(self._engine) as session:
            connection = get_or_fail(session, Connection, connection_id)
            if connection.status == ConnectionStatus.ACTIVE:
                connection.status = ConnectionStatus.NEEDS_REAUTH
                connection.last_error = str(err)
                connection.updated_at = utcnow()
                session.add(connection)
                events.connection_changed(session, connection, ConnectionStatus.ACTIVE)
            provider = self._accounts.provider(connection.kind)
            return AuthExpiredError(
                f"The {provider.label} connection for {connection.custom_address} needs "
                f"attention: {err} {provider.needs_attention(connection.custom_address)}"
            )

    def _begin_attempt(
        self, message_id: str
    ) -> tuple[Outgoing, str, uuid.UUID | None] | str | None:
        """The message to send, or None when it was sent already, or "cancelled"."""
        with session_scope(self._engine) as session:
            message = get_or_fail(session, Message, message_id)
            if message.status == MessageStatus.SENT:
                return None
            if message.status == MessageStatus.CANCELLED:
                return "cancelled"
            if _not_going_out(session, message):
                # Queued while the erasure began: it never goes out.
                message.status = MessageStatus.CANCELLED
                message.error = NOT_SENT_ERASED
                message.updated_at = utcnow()
                session.add(message)
                events.message_event(session, message, EventType.MESSAGE_CANCELLED, NOT_SENT_ERASED)
                return "cancelled"
            # Counted, not numbered: the first attempt runs as a local activity and the retries
            # as a regular one, each numbering its own attempts from 1.
            message.attempts += 1
            # Under way: an erasure of the candidate waits for this attempt to end.
            message.attempt_started_at = utcnow()
            session.add(message)
            if message.raw_mime is None:
                raise ApplicationError(
                    f"message {message_id} was never composed", non_retryable=True
                )
            mail = Outgoing(
                mime=message.raw_mime,
                envelope_from=message.from_address,
                envelope_to=list(message.to_addresses),
                custom_id=message_id,
                company_id=str(message.company_id),
            )
            return mail, message.transport or "platform", message.connection_id

    def _note_failure(self, message_id: str, err: MailError) -> None:
        with session_scope(self._engine) as session:
            message = get_or_fail(session, Message, message_id)
            text = for_recruiter(err)
            if isinstance(err, TransientMailError):
                text += " Retrying."
            message.error = text
            message.attempt_started_at = None
            message.updated_at = utcnow()
            session.add(message)

    def _mark_sent(self, message_id: str, provider_id: str) -> None:
        with session_scope(self._engine) as session:
            message = get_or_fail(session, Message, message_id)
            message.status = MessageStatus.SENT
            message.error = None
            message.attempt_started_at = None
            message.sent_at = utcnow()
            message.provider_message_id = provider_id[:255]
            message.updated_at = message.sent_at
            session.add(message)
            events.message_event(session, message, EventType.MESSAGE_SENT)

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
            self.resolve_sender,
            self.compose_message,
            self.record_outcome,
        ]

    @property
    def all(self) -> list:
        return [*self.local, self.deliver_message]
