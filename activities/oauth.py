"""Activities of the OAuth setup, and the transport that sends through a signed-in mailbox.

Everything secret (the PKCE flow, the callback's code, the tokens) is read from and written to
the database here, encrypted, and never returned to the workflow.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from email.message import EmailMessage

from sqlalchemy import Engine
from sqlmodel import Session
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.connections import load_connection as _load
from activities.connections import open_secret, seal_secret
from activities.google import GoogleProvider, admin_instructions
from activities.microsoft import MicrosoftProvider
from core.db import session_scope
from core.errors import (
    ConfigurationError,
    ConsentRequiredError,
    MailError,
    TransientMailError,
)
from core.mail import Composed
from core.models import Connection, utcnow
from core.security import SecretBox
from core.settings import Settings
from workflows.oauth_setup import BeginResult, ExchangeResult
from workflows.smtp_setup import VerificationResult, VerificationStep

Provider = MicrosoftProvider | GoogleProvider


def provider_for(settings: Settings, kind: str) -> Provider:
    if kind == "microsoft":
        return MicrosoftProvider(settings)
    if kind == "google":
        return GoogleProvider(settings)
    raise ConfigurationError(f"{kind} is not an OAuth provider")


def seal_json(box: SecretBox, connection_id: uuid.UUID, value: dict) -> bytes:
    return box.encrypt(json.dumps(value).encode(), associated_data=connection_id.bytes)


def open_json(box: SecretBox, connection_id: uuid.UUID, blob: bytes | None) -> dict | None:
    if blob is None:
        return None
    return json.loads(box.decrypt(blob, associated_data=connection_id.bytes))


class OAuthActivities:
    def __init__(self, engine: Engine, settings: Settings, box: SecretBox) -> None:
        self._engine = engine
        self._settings = settings
        self._box = box

    @property
    def _state_ttl(self) -> float:
        # The nonce makes a state single-use; the expiry only bounds how long a link can wait.
        longest = max(self._settings.oauth_signin_wait, self._settings.oauth_admin_consent_wait)
        return longest.total_seconds() + 86400

    def new_state(self, connection_id: uuid.UUID, purpose: str) -> tuple[str, str]:
        nonce = secrets.token_urlsafe(16)
        state = self._box.sign({"c": str(connection_id), "n": nonce, "p": purpose}, self._state_ttl)
        return state, nonce

    @activity.defn(name="begin-oauth-authorization")
    def begin_oauth_authorization(self, connection_id: str) -> BeginResult:
        """A new sign-in link with a new single-use state; the PKCE flow is stored encrypted."""
        with Session(self._engine) as session:
            connection = _load(session, connection_id)
            kind, address = connection.kind, connection.custom_address
        state, nonce = self.new_state(uuid.UUID(connection_id), "signin")
        try:
            url, flow = provider_for(self._settings, kind).authorization(state, address)
        except TransientMailError as err:
            raise ApplicationError(str(err), type="TransientMailError") from err
        except MailError as err:
            return BeginResult(ok=False, error=str(err))
        with session_scope(self._engine) as session:
            connection = _load(session, connection_id)
            connection.oauth_flow_blob = seal_json(self._box, connection.id, flow)
            connection.oauth_state_nonce = nonce
            connection.authorization_url = url
            connection.updated_at = utcnow()
            session.add(connection)
        return BeginResult(ok=True)

    @activity.defn(name="exchange-oauth-code")
    def exchange_oauth_code(self, connection_id: str) -> ExchangeResult:
        """Redeem the stored callback; store the grant, or say what the admin must do next."""
        with session_scope(self._engine) as session:
            connection = _load(session, connection_id)
            callback = open_json(self._box, connection.id, connection.oauth_callback_blob)
            flow = open_json(self._box, connection.id, connection.oauth_flow_blob)
            # Single-use: whatever happens next, this code and verifier are spent.
            connection.oauth_callback_blob = None
            connection.oauth_flow_blob = None
            kind, address, cid = connection.kind, connection.custom_address, connection.id
        if callback is None or flow is None:
            return ExchangeResult("retry_signin", "The sign-in answer was lost; sign in again.")
        provider = provider_for(self._settings, kind)
        try:
            grant = provider.exchange(flow, callback)
        except ConsentRequiredError as err:
            self._await_consent(cid, kind, address)
            return ExchangeResult("consent_required", str(err))
        except TransientMailError as err:
            return ExchangeResult("retry_signin", f"{err} Sign in again.")
        except MailError as err:
            return ExchangeResult("failed", str(err))

        if not grant.mailbox:
            return ExchangeResult(
                "failed", f"{provider.name} did not say which mailbox signed in; sign in again."
            )
        if grant.mailbox.lower() != address.lower():
            return ExchangeResult(
                "failed",
                f"You signed in as {grant.mailbox}, but the custom address is {address}. Sign "
                f"in with the {address} account itself: shared mailboxes and other accounts "
                "are not supported.",
                mailbox=grant.mailbox,
            )
        with session_scope(self._engine) as session:
            connection = _load(session, connection_id)
            connection.secret_blob = seal_secret(self._box, cid, grant.secret)
            connection.display_mailbox = grant.mailbox
            connection.steps = [
                {"name": f"{provider.name} sign-in", "status": "ok", "detail": ""},
                {"name": "Signed-in mailbox", "status": "ok", "detail": grant.mailbox},
                {"name": "Send permission", "status": "ok", "detail": "granted"},
            ]
            connection.updated_at = utcnow()
            session.add(connection)
        return ExchangeResult("authorized", mailbox=grant.mailbox)

    def _await_consent(self, connection_id: uuid.UUID, kind: str, address: str) -> None:
        with session_scope(self._engine) as session:
            connection = _load(session, str(connection_id))
            if kind == "microsoft":
                state, nonce = self.new_state(connection_id, "admin-consent")
                provider = MicrosoftProvider(self._settings)
                connection.admin_consent_url = provider.admin_consent_url(address, state)
                connection.oauth_state_nonce = nonce
            else:
                connection.admin_instructions = admin_instructions(
                    self._settings.google_client_id
                ).replace("{id}", str(connection_id))
            connection.updated_at = utcnow()
            session.add(connection)

    @activity.defn(name="test-oauth-connection")
    def test_oauth_connection(self, connection_id: str) -> VerificationResult:
        """Refresh the grant (saving any new token) and check the mailbox is still the address."""
        with Session(self._engine) as session:
            connection = _load(session, connection_id)
            kind, address = connection.kind, connection.custom_address
            secret = open_secret(self._box, connection)
        provider = provider_for(self._settings, kind)
        steps: list[dict] = []
        error = None
        try:
            token, changed = provider.access_token(secret)
            steps.append({"name": "Token refresh", "status": "ok", "detail": ""})
            if changed:
                self.save_secret(connection_id, changed)
            mailbox = provider.profile(token)
            if mailbox and mailbox != address.lower():
                error = f"The signed-in mailbox is now {mailbox}, not {address}; sign in again."
                steps.append({"name": "Mailbox", "status": "failed", "detail": error})
            else:
                steps.append({"name": "Mailbox", "status": "ok", "detail": mailbox or address})
        except MailError as err:
            error = str(err)
            steps.append({"name": "Token refresh", "status": "failed", "detail": error})
        with session_scope(self._engine) as session:
            connection = _load(session, connection_id)
            connection.steps = [
                s for s in connection.steps if s["name"] not in {"Token refresh", "Mailbox"}
            ] + steps
            connection.tested_at = utcnow()
            connection.last_error = error
            session.add(connection)
        return VerificationResult(
            ok=error is None, steps=[VerificationStep(**s) for s in steps], error=error
        )

    def save_secret(self, connection_id: str, secret: dict) -> None:
        """Every new refresh token is saved (Microsoft rotates them on use)."""
        with session_scope(self._engine) as session:
            connection = _load(session, connection_id)
            connection.secret_blob = seal_secret(self._box, connection.id, secret)
            connection.updated_at = utcnow()
            session.add(connection)

    @property
    def all(self) -> list:
        return [
            self.begin_oauth_authorization,
            self.exchange_oauth_code,
            self.test_oauth_connection,
        ]


class OAuthTransport:
    """Sends through a connected Google or Microsoft mailbox, refreshing its token first."""

    def __init__(
        self, activities: OAuthActivities, provider: Provider, connection: Connection, box
    ) -> None:
        self.name = connection.kind
        self._activities = activities
        self._provider = provider
        self._connection_id = str(connection.id)
        self._address = connection.custom_address
        self._secret = open_secret(box, connection)
        self._token_value: str | None = None  # one refresh serves a whole bulk batch

    def _token(self) -> str:
        token, changed = self._provider.access_token(self._secret)
        if changed:
            self._activities.save_secret(self._connection_id, changed)
            self._secret = changed
        return token

    async def send(self, message: EmailMessage, composed: Composed, custom_id: str) -> str:
        if self._token_value is None:
            self._token_value = await asyncio.to_thread(self._token)
        return await self._provider.send(self._token_value, self._address, composed.mime)
