"""From a connection row to a provider and the account it sends as: the one place that
decrypts a connection's secret, and the one that saves the secrets providers renew."""

from __future__ import annotations

import uuid
from contextlib import AbstractAsyncContextManager

from sqlalchemy import Engine
from sqlmodel import Session

from core import throttle
from core.connections import rules
from core.db import get_or_fail, session_scope
from core.errors import AuthExpiredError
from core.models import Connection, utcnow
from core.security import SecretBox
from core.send import lease
from core.send.compose import SenderReplaced
from core.settings import Settings
from core.statuses import OAUTH_KINDS, ConnectionStatus
from providers import oauth_provider, platform_provider, provider
from providers.base import Account, MailProvider, OAuthProvider, Secret, SmtpServer


class Accounts:
    """Built once by the worker; shared by the activity classes that send or test."""

    def __init__(self, engine: Engine, settings: Settings, box: SecretBox) -> None:
        self.engine = engine
        self.settings = settings
        self.box = box
        self._platform: tuple[MailProvider, Account] | None = None
        # One instance per kind, for the worker's life: providers pool their HTTP clients.
        self._providers: dict[str, MailProvider] = {}

    def platform(self) -> tuple[MailProvider, Account]:
        """The platform transport: built once, from settings."""
        if self._platform is None:
            found = platform_provider(self.settings)
            self._platform = (found, found.platform_account())
        return self._platform

    def provider(self, kind: str) -> MailProvider:
        found = self._providers.get(kind)
        if found is None:
            found = self._providers[kind] = provider(kind, self.settings)
        return found

    def oauth(self, kind: str) -> OAuthProvider:
        found = self.provider(kind)
        if not isinstance(found, OAuthProvider):
            return oauth_provider(kind, self.settings)  # raises, saying why
        return found

    def account(self, connection: Connection) -> Account:
        """The connection's mailbox with its credentials decrypted, for one activity."""
        server = None
        if connection.smtp_host:
            server = SmtpServer(
                host=connection.smtp_host,
                port=connection.smtp_port or 587,
                security=connection.smtp_security or "starttls",
                username=connection.smtp_username,
                verify_certificate=connection.smtp_verify_certificate,
            )
        connection_id = str(connection.id)
        gate = None
        limit = self._concurrent_per_mailbox(connection.kind)
        if limit:
            engine, key = self.engine, f"{connection.kind}:{connection_id}"

            def gate() -> AbstractAsyncContextManager[None]:
                return lease.held(engine, key, limit)

        return Account(
            gate=gate,
            address=connection.custom_address,
            secret=self.box.open_json(connection.id, connection.secret_blob) or {},
            server=server,
            save_secret=lambda secret: self.save_secret(connection_id, secret),
            connection_id=connection_id,
            mailbox=connection.display_mailbox or "",
            scopes=tuple(connection.granted_scopes or ()),
            application=connection.send_mode == "application",
        )

    def _concurrent_per_mailbox(self, kind: str) -> int:
        if kind not in OAUTH_KINDS:
            return 0
        return self.oauth(kind).concurrent_per_mailbox

    def save_secret(self, connection_id: str, secret: Secret) -> None:
        """Every renewed credential is saved, encrypted (Microsoft rotates refresh tokens)."""
        with session_scope(self.engine) as session:
            connection = get_or_fail(session, Connection, connection_id)
            connection.secret_blob = self.box.seal_json(uuid.UUID(connection_id), secret)
            connection.updated_at = utcnow()
            session.add(connection)

    # -- sending through a connection ------------------------------------------------------

    def sender_for(
        self, transport: str, connection_id: uuid.UUID | None
    ) -> tuple[MailProvider, Account]:
        """The provider and account a message composed for `transport` goes out through.
        SenderReplaced when that connection no longer sends for its scope (the message is
        composed again for the sender in effect now); AuthExpiredError while it needs a new
        sign-in (never a silent fallback to another address)."""
        if transport == "platform":
            return self.platform()
        with session_scope(self.engine) as session:
            connection = session.get(Connection, connection_id) if connection_id else None
            if connection is None or transport != connection.kind:
                raise SenderReplaced(f"the {transport} connection no longer exists")
            if connection.status == ConnectionStatus.NEEDS_REAUTH:
                raise AuthExpiredError(connection.last_error or "Its credentials were refused.")
            if connection.status != ConnectionStatus.ACTIVE:
                raise SenderReplaced(f"the connection for {connection.custom_address} is off")
            return self.provider(connection.kind), self.account(connection)

    def rate_for(self, provider: MailProvider, connection_id: uuid.UUID | None) -> throttle.Rate:
        """The mailbox's rate: its provider's, with the connection's own quota over it."""
        rate = provider.rate()
        if connection_id is None:
            return rate
        with Session(self.engine) as session:
            connection = session.get(Connection, connection_id)
        if connection is None:
            return rate
        return throttle.with_overrides(
            rate, connection.quota_messages_per_day, connection.quota_recipients_per_day
        )

    def needs_reauth(self, connection_id: uuid.UUID, err: AuthExpiredError) -> AuthExpiredError:
        """Credentials refused at send time: flag the connection, fail with a clear reason."""
        with session_scope(self.engine) as session:
            connection = get_or_fail(session, Connection, connection_id)
            rules.needs_reauth(session, connection, str(err))
            provider = self.provider(connection.kind)
            return AuthExpiredError(
                f"The {provider.label} connection for {connection.custom_address} needs "
                f"attention: {err} {provider.needs_attention(connection.custom_address)}"
            )
