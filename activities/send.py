"""Activities of SendMessage. DB steps are sync (run as local activities in a thread pool);
delivery is async. All of them read the subject and body from the database, by message id."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import cast

from sqlalchemy import Engine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.connections import smtp_target
from activities.oauth import OAuthActivities, OAuthTransport, provider_for
from activities.platform import SmtpTransport, Transport, platform_transport
from core.db import session_scope
from core.errors import (
    AuthExpiredError,
    ConfigurationError,
    MailError,
    TransientMailError,
)
from core.mail import Composed, compose
from core.models import (
    KIND_LABELS,
    Candidate,
    Company,
    Connection,
    ConnectionStatus,
    Message,
    MessageStatus,
    SenderNameMode,
    User,
    utcnow,
)
from core.security import SecretBox
from core.senders import effective_sender
from core.settings import Settings
from core.tls import client_tls_context
from workflows.send_message import (
    ComposeInput,
    DeliveryResult,
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
    def __init__(self, engine: Engine, settings: Settings, box: SecretBox) -> None:
        self._engine = engine
        self._settings = settings
        self._box = box
        self._platform: Transport | None = None
        self._oauth = OAuthActivities(engine, settings, box)

    # -- local activities (sync, thread pool) --------------------------------------------

    @activity.defn(name="resolve-sender")
    def resolve_sender(self, message_id: str) -> SenderChoice:
        with session_scope(self._engine) as session:
            message = session.get(Message, uuid.UUID(message_id))
            if message is None:
                raise ApplicationError(f"message {message_id} does not exist", non_retryable=True)
            company = session.get(Company, message.company_id)
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

    @activity.defn(name="compose-message")
    def compose_message(self, input: ComposeInput) -> None:
        """Compose the MIME once and store it, so every attempt sends the same bytes."""
        with session_scope(self._engine) as session:
            message = session.get(Message, uuid.UUID(input.message_id))
            if message.raw_mime is not None:
                return
            candidate = session.get(Candidate, message.candidate_id)
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

    @activity.defn(name="record-outcome")
    def record_outcome(self, input: RecordOutcomeInput) -> SendMessageResult:
        with session_scope(self._engine) as session:
            message = session.get(Message, uuid.UUID(input.message_id))
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

    @activity.defn(name="deliver-message")
    async def deliver_message(self, message_id: str) -> DeliveryResult:
        attempt = activity.info().attempt
        state = await asyncio.to_thread(self._begin_attempt, message_id, attempt)
        if state is None:
            return DeliveryResult(already_sent=True)
        raw, envelope_from, envelope_to, transport_name, connection_id = state
        parsed = cast(EmailMessage, message_from_bytes(raw, policy=default_policy))
        composed = Composed(mime=raw, envelope_from=envelope_from, envelope_to=envelope_to)
        try:
            transport = await asyncio.to_thread(self.transport_for, transport_name, connection_id)
            provider_id = await transport.send(parsed, composed, custom_id=message_id)
        except MailError as err:
            if isinstance(err, AuthExpiredError) and connection_id is not None:
                err = await asyncio.to_thread(self.mark_needs_reauth, connection_id, err)
            await asyncio.to_thread(self._note_failure, message_id, err)
            raise to_application_error(err) from err
        await asyncio.to_thread(self._mark_sent, message_id, provider_id)
        return DeliveryResult(provider_message_id=provider_id)

    def transport_for(self, name: str, connection_id: uuid.UUID | None) -> Transport:
        if name == "platform":
            if self._platform is None:
                self._platform = platform_transport(self._settings)
            return self._platform
        with session_scope(self._engine) as session:
            connection = session.get(Connection, connection_id) if connection_id else None
            if connection is None or name != connection.kind:
                raise ConfigurationError(
                    f"The {name} connection this message was composed for no longer exists; "
                    "send the message again."
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
            if connection.kind != "smtp":
                return OAuthTransport(
                    self._oauth,
                    provider_for(self._settings, connection.kind),
                    connection,
                    self._box,
                )
            target = smtp_target(self._box, connection)
        tls = client_tls_context(self._settings.ca_bundle, verify=target.verify_certificate)
        return SmtpTransport(target, tls, self._settings.smtp_timeout_seconds)

    def mark_needs_reauth(
        self, connection_id: uuid.UUID, err: AuthExpiredError
    ) -> AuthExpiredError:
        """Credentials refused at send time: flag the connection, fail with a clear reason."""
        with session_scope(self._engine) as session:
            connection = session.get(Connection, connection_id)
            if connection.status == ConnectionStatus.ACTIVE:
                connection.status = ConnectionStatus.NEEDS_REAUTH
                connection.last_error = str(err)
                connection.updated_at = utcnow()
                session.add(connection)
            label = KIND_LABELS[connection.kind]
            if connection.kind == "smtp":
                todo = (
                    "An admin must switch back to the platform service and set the connection "
                    "up again."
                )
            else:
                todo = "An admin must reconnect the mailbox (Reconnect in the mail settings)."
            return AuthExpiredError(
                f"The {label} connection for {connection.custom_address} needs attention: "
                f"{err} {todo}"
            )

    def _begin_attempt(
        self, message_id: str, attempt: int
    ) -> tuple[bytes, str, list[str], str, uuid.UUID | None] | None:
        with session_scope(self._engine) as session:
            message = session.get(Message, uuid.UUID(message_id))
            if message.status == MessageStatus.SENT:
                return None
            message.attempts = attempt
            session.add(message)
            return (
                message.raw_mime,
                message.from_address,
                list(message.to_addresses),
                message.transport or "platform",
                message.connection_id,
            )

    def _note_failure(self, message_id: str, err: MailError) -> None:
        with session_scope(self._engine) as session:
            message = session.get(Message, uuid.UUID(message_id))
            text = str(err)
            if isinstance(err, TransientMailError):
                text += " Retrying."
            message.error = text
            message.updated_at = utcnow()
            session.add(message)

    def _mark_sent(self, message_id: str, provider_id: str) -> None:
        with session_scope(self._engine) as session:
            message = session.get(Message, uuid.UUID(message_id))
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
