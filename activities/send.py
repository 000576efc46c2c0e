"""Activities of SendMessage. DB steps are sync (run as local activities in a thread pool);
delivery is async. All of them read the subject and body from the database, by message id."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from sqlalchemy import Engine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.accounts import Accounts
from core.db import RowMissing, get_or_fail, session_scope
from core.errors import (
    AuthExpiredError,
    ConfigurationError,
    MailError,
    TransientMailError,
)
from core.mail import compose
from core.models import Candidate, Company, Connection, Message, SenderNameMode, User, utcnow
from core.senders import effective_sender
from core.settings import Settings
from core.statuses import ConnectionStatus, MessageStatus
from providers.base import Account, MailProvider, Outgoing
from workflows.send_message import (
    COMPOSE_MESSAGE,
    DELIVER_MESSAGE,
    RECORD_OUTCOME,
    RESOLVE_SENDER,
    ComposeInput,
    DeliveryResult,
    MessageRef,
    RecordOutcomeInput,
    SenderChoice,
    SendMessageResult,
)


def to_application_error(err: MailError) -> ApplicationError:
    """Transient errors retry (honouring Retry-After); every other MailError stops at once."""
    if isinstance(err, TransientMailError):
        return ApplicationError(
            str(err), type="TransientMailError", next_retry_delay=err.retry_after
        )
    return ApplicationError(str(err), type=type(err).__name__, non_retryable=True)


def _describe(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds >= 3600:
        return f"{seconds / 3600:g} hours"
    if seconds >= 60:
        return f"{seconds // 60} minutes"
    return f"{seconds} seconds"


class SendActivities:
    def __init__(self, engine: Engine, settings: Settings, accounts: Accounts) -> None:
        self._engine = engine
        self._settings = settings
        self._accounts = accounts

    # -- local activities (sync, thread pool) --------------------------------------------

    @activity.defn(name=RESOLVE_SENDER)
    def resolve_sender(self, input: MessageRef) -> SenderChoice:
        with session_scope(self._engine) as session:
            message = get_or_fail(session, Message, input.message_id)
            company = get_or_fail(session, Company, message.company_id)
            candidate = session.get(Candidate, message.candidate_id)
            sender = effective_sender(
                session, self._settings, company, candidate.legal_entity_id if candidate else None
            )
            name = company.name
            if company.sender_name_mode == SenderNameMode.EMPLOYEE and message.sender_user_id:
                user = session.get(User, message.sender_user_id)
                name = user.name if user else name
            return SenderChoice(
                address=sender.address,
                name=name,
                transport=sender.transport,
                source=sender.source,
                connection_id=str(sender.connection_id) if sender.connection_id else None,
            )

    @activity.defn(name=COMPOSE_MESSAGE)
    def compose_message(self, input: ComposeInput) -> None:
        """Compose the MIME once and store it, so every attempt sends the same bytes."""
        with session_scope(self._engine) as session:
            message = get_or_fail(session, Message, input.message_id)
            if message.raw_mime is not None:
                return
            candidate = session.get(Candidate, message.candidate_id)
            if candidate is None:
                raise RowMissing(f"The candidate of message {input.message_id} was deleted.")
            _, composed = compose(
                from_address=input.sender.address,
                from_name=input.sender.name,
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
            message.from_address = input.sender.address
            message.from_name = input.sender.name
            message.to_addresses = composed.envelope_to
            message.transport = input.sender.transport
            message.connection_id = (
                uuid.UUID(input.sender.connection_id) if input.sender.connection_id else None
            )
            if message.status == MessageStatus.QUEUED:
                message.status = MessageStatus.SENDING
            message.updated_at = utcnow()
            session.add(message)

    @activity.defn(name=RECORD_OUTCOME)
    def record_outcome(self, input: RecordOutcomeInput) -> SendMessageResult:
        with session_scope(self._engine) as session:
            message = get_or_fail(session, Message, input.message_id)
            if message.status == MessageStatus.SENT or input.status == MessageStatus.SENT:
                # deliver-message already wrote `sent`; never downgrade a delivered message.
                message.status = MessageStatus.SENT
                message.error = None
            else:
                reason = input.error or "The message could not be delivered."
                if input.retries_exhausted and input.retry_total is not None:
                    reason = (
                        f"Gave up after {message.attempts} attempts over "
                        f"{_describe(input.retry_total)}. Last problem: {message.error or reason}"
                    )
                message.status = MessageStatus.FAILED
                message.error = reason
            message.updated_at = utcnow()
            session.add(message)
            return SendMessageResult(status=message.status, error=message.error)

    # -- delivery (async, talks to the provider) --------------------------------------------

    @activity.defn(name=DELIVER_MESSAGE)
    async def deliver_message(self, input: MessageRef) -> DeliveryResult:
        message_id = input.message_id
        attempt = activity.info().attempt
        state = await asyncio.to_thread(self._begin_attempt, message_id, attempt)
        if state is None:
            return DeliveryResult(already_sent=True)
        mail, transport_name, connection_id = state
        try:
            provider, account = await asyncio.to_thread(
                self.sender_for, transport_name, connection_id
            )
            provider_id = await provider.send(account, mail)
        except MailError as err:
            if isinstance(err, AuthExpiredError) and connection_id is not None:
                err = await asyncio.to_thread(self.mark_needs_reauth, connection_id, err)
            await asyncio.to_thread(self._note_failure, message_id, err)
            raise to_application_error(err) from err
        await asyncio.to_thread(self._mark_sent, message_id, provider_id)
        return DeliveryResult(provider_message_id=provider_id)

    def sender_for(
        self, transport: str, connection_id: uuid.UUID | None
    ) -> tuple[MailProvider, Account]:
        """The provider and account a message composed for `transport` goes out through."""
        if transport == "platform":
            return self._accounts.platform()
        with session_scope(self._engine) as session:
            connection = session.get(Connection, connection_id) if connection_id else None
            if connection is None or transport != connection.kind:
                raise ConfigurationError(
                    f"The {transport} connection this message was composed for no longer "
                    "exists; send the message again."
                )
            if connection.status == ConnectionStatus.NEEDS_REAUTH:
                raise AuthExpiredError(connection.last_error or "Its credentials were refused.")
            if connection.status != ConnectionStatus.ACTIVE:
                # Switched back to the platform after this message was composed: the From
                # address is the custom one, so do not send it through another mailbox.
                raise ConfigurationError(
                    f"The connection for {connection.custom_address} is no longer active; "
                    "send the message again."
                )
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
            provider = self._accounts.provider(connection.kind)
            return AuthExpiredError(
                f"The {provider.label} connection for {connection.custom_address} needs "
                f"attention: {err} {provider.needs_attention(connection.custom_address)}"
            )

    def _begin_attempt(
        self, message_id: str, attempt: int
    ) -> tuple[Outgoing, str, uuid.UUID | None] | None:
        with session_scope(self._engine) as session:
            message = get_or_fail(session, Message, message_id)
            if message.status == MessageStatus.SENT:
                return None
            message.attempts = attempt
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
            )
            return mail, message.transport or "platform", message.connection_id

    def _note_failure(self, message_id: str, err: MailError) -> None:
        with session_scope(self._engine) as session:
            message = get_or_fail(session, Message, message_id)
            text = str(err)
            if isinstance(err, TransientMailError):
                text += " Retrying."
            message.error = text
            message.updated_at = utcnow()
            session.add(message)

    def _mark_sent(self, message_id: str, provider_id: str) -> None:
        with session_scope(self._engine) as session:
            message = get_or_fail(session, Message, message_id)
            message.status = MessageStatus.SENT
            message.error = None
            message.sent_at = utcnow()
            message.provider_message_id = provider_id[:255]
            message.updated_at = message.sent_at
            session.add(message)

    @property
    def local(self) -> list:
        return [self.resolve_sender, self.compose_message, self.record_outcome]

    @property
    def all(self) -> list:
        return [*self.local, self.deliver_message]
