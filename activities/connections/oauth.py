"""Activities of the OAuth setup: issue a sign-in link, redeem the callback, email an
administrator what they need to approve Recruitmail.

Everything secret (the PKCE flow, the callback's code, the tokens) is read from and written to
the database here, encrypted, and never returned to the workflow.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import asdict

from sqlmodel import Session
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.accounts import Accounts
from activities.common import to_application_error
from contracts.connections.admin_consent import (
    SEND_ADMIN_CONSENT_MAIL,
    AdminConsentContract,
    AdminConsentMailInput,
)
from contracts.connections.oauth import (
    BEGIN_OAUTH_AUTHORIZATION,
    EXCHANGE_OAUTH_CODE,
    BeginResult,
    ExchangeResult,
    OAuthContract,
)
from contracts.connections.setup import ConnectionRef
from core.audit import record_connection
from core.connections.admin_consent import admin_consent_mail
from core.db import get_or_fail, session_scope
from core.errors import AdminConsentRequiredError, MailError, TransientMailError
from core.models import AuditEvent, Company, Connection, utcnow
from core.statuses import ConnectionStatus, ExchangeOutcome, InboundPath
from providers.base import OAuthProvider, Outgoing


class OAuthActivities(OAuthContract, AdminConsentContract):
    def __init__(self, accounts: Accounts) -> None:
        self._accounts = accounts
        self._engine = accounts.engine
        self._settings = accounts.settings
        self._box = accounts.box

    @property
    def _state_ttl(self) -> float:
        # The nonce makes a state single-use; the expiry only bounds how long a link can wait.
        longest = max(self._settings.oauth_signin_wait, self._settings.oauth_admin_consent_wait)
        return longest.total_seconds() + 86400

    def new_state(self, connection_id: uuid.UUID, purpose: str) -> tuple[str, str]:
        nonce = secrets.token_urlsafe(16)
        state = self._box.sign({"c": str(connection_id), "n": nonce, "p": purpose}, self._state_ttl)
        return state, nonce

    @activity.defn(name=BEGIN_OAUTH_AUTHORIZATION)
    def begin_oauth_authorization(self, input: ConnectionRef) -> BeginResult:
        """A new sign-in link with a new single-use state; the PKCE flow is stored encrypted."""
        with Session(self._engine) as session:
            connection = get_or_fail(session, Connection, input.connection_id)
            kind, address = connection.kind, connection.custom_address
            read = InboundPath.MAILBOX_SYNC in (connection.inbound_paths or [])
            write = connection.large_files
        state, nonce = self.new_state(uuid.UUID(input.connection_id), "signin")
        try:
            url, flow = self._accounts.oauth(kind).authorization_url(state, address, read, write)
        except TransientMailError as err:
            raise ApplicationError(str(err), type="TransientMailError") from err
        except MailError as err:
            return BeginResult(ok=False, error=str(err))
        with session_scope(self._engine) as session:
            connection = get_or_fail(session, Connection, input.connection_id)
            connection.oauth_flow_blob = self._box.seal_json(connection.id, flow)
            connection.oauth_state_nonce = nonce
            connection.authorization_url = url
            connection.updated_at = utcnow()
            session.add(connection)
        return BeginResult(ok=True)

    @activity.defn(name=EXCHANGE_OAUTH_CODE)
    def exchange_oauth_code(self, input: ConnectionRef) -> ExchangeResult:
        """Redeem the stored callback; store the grant, or say what the admin must do next."""
        with session_scope(self._engine) as session:
            connection = get_or_fail(session, Connection, input.connection_id)
            callback = self._box.open_json(connection.id, connection.oauth_callback_blob)
            flow = self._box.open_json(connection.id, connection.oauth_flow_blob)
            # Single-use: whatever happens next, this code and verifier are spent.
            connection.oauth_callback_blob = None
            connection.oauth_flow_blob = None
            kind, address, cid = connection.kind, connection.custom_address, connection.id
            read = InboundPath.MAILBOX_SYNC in (connection.inbound_paths or [])
            write = connection.large_files
        if callback is None or flow is None:
            return ExchangeResult(
                ExchangeOutcome.RETRY_SIGNIN, "The sign-in answer was lost; sign in again."
            )
        provider = self._accounts.oauth(kind)
        try:
            grant = provider.exchange_code(flow, callback)
        except AdminConsentRequiredError as err:
            self._await_admin_consent(provider, cid, address, read, write)
            return ExchangeResult(
                ExchangeOutcome.CONSENT_REQUIRED, str(err), consent_link=provider.consent_link
            )
        except TransientMailError as err:
            return ExchangeResult(ExchangeOutcome.RETRY_SIGNIN, f"{err} Sign in again.")
        except MailError as err:
            return ExchangeResult(ExchangeOutcome.FAILED, str(err))

        if not grant.mailbox:
            return ExchangeResult(
                ExchangeOutcome.FAILED,
                f"{provider.label} did not say which mailbox signed in; sign in again.",
            )
        refusal = provider.mailbox_refusal(grant.identity, address)
        if refusal:
            return ExchangeResult(ExchangeOutcome.FAILED, refusal, mailbox=grant.mailbox)
        with session_scope(self._engine) as session:
            connection = get_or_fail(session, Connection, input.connection_id)
            connection.secret_blob = self._box.seal_json(cid, grant.secret)
            connection.display_mailbox = grant.mailbox
            connection.granted_scopes = sorted(grant.scopes)
            connection.steps = [
                asdict(step) for step in provider.sign_in_steps(grant.identity, address)
            ]
            connection.updated_at = utcnow()
            session.add(connection)
        return ExchangeResult(ExchangeOutcome.AUTHORIZED, mailbox=grant.mailbox)

    def _await_admin_consent(
        self,
        provider: OAuthProvider,
        connection_id: uuid.UUID,
        address: str,
        read: bool,
        write: bool = False,
    ) -> None:
        """Store what the person connecting forwards to an administrator."""
        state, nonce = self.new_state(connection_id, "admin-consent")
        help = provider.admin_consent_help(str(connection_id), address, state, read, write)
        with session_scope(self._engine) as session:
            connection = get_or_fail(session, Connection, connection_id)
            connection.admin_consent_url = help.admin_consent_url
            connection.admin_instructions = help.admin_instructions
            if provider.consent_link:  # the link carries the state now valid
                connection.oauth_state_nonce = nonce
            connection.updated_at = utcnow()
            session.add(connection)

    @activity.defn(name=SEND_ADMIN_CONSENT_MAIL)
    async def send_admin_consent_mail(self, input: AdminConsentMailInput) -> None:
        """Compose the request from the stored link or steps and send it as the platform."""
        with Session(self._engine) as session:
            connection = session.get(Connection, uuid.UUID(input.connection_id))
            state = connection.setup_state if connection else "deleted"
            if connection is None or state != ConnectionStatus.AWAITING_ADMIN_CONSENT:
                raise ApplicationError(
                    "The setup no longer waits for an administrator's approval "
                    f"({state}); nothing was sent.",
                    type="NotWaiting",
                    non_retryable=True,
                )
            company = get_or_fail(session, Company, connection.company_id)
            company_id = str(company.id)
            asked = get_or_fail(session, AuditEvent, input.request_id)
            recipient = str(asked.detail.get("to", ""))
            try:
                composed = admin_consent_mail(self._settings, connection, company, recipient)
            except ValueError as err:  # no retry can compose it
                raise ApplicationError(
                    f"The message could not be composed: {err}",
                    type="ComposeError",
                    non_retryable=True,
                ) from err
        provider, account = self._accounts.platform()
        try:
            await provider.send(account, Outgoing.of(composed, "consent", company_id))
        except MailError as err:
            raise to_application_error(err) from None
        with session_scope(self._engine) as session:
            # The mail went out: a connection deleted meanwhile must not make a retry send it
            # again, so its audit line is skipped rather than failed.
            sent_for = session.get(Connection, uuid.UUID(input.connection_id))
            if sent_for is not None:
                record_connection(
                    session, sent_for, None, "connection.consent_request_sent", to=recipient
                )

    @property
    def all(self) -> list:
        return [
            self.begin_oauth_authorization,
            self.exchange_oauth_code,
            self.send_admin_consent_mail,
        ]
