"""oauth-connection-setup: sign in with Google or Microsoft, wait for an administrator's
consent for as long as it takes, test, then activate."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import activity

from contracts.connections.setup import ConnectionRef

BEGIN_OAUTH_AUTHORIZATION = "begin-oauth-authorization"
EXCHANGE_OAUTH_CODE = "exchange-oauth-code"


@dataclass
class OAuthSetupInput:
    connection_id: str
    company_id: str
    provider: str  # google or microsoft
    signin_wait: timedelta = timedelta(hours=1)
    consent_wait: timedelta = timedelta(days=30)
    activation_wait: timedelta = timedelta(days=7)
    # A reconnect of a connection that was already active: it goes live again once tested.
    reconnect: bool = False
    user_id: str | None = None
    redirect_wait: timedelta = timedelta(minutes=15)


@dataclass
class CallbackInput:
    """The browser came back. The code itself stays in the database, encrypted."""

    nonce: str


@dataclass
class CallbackOutcome:
    status: str  # the setup's state after the exchange
    error: str | None = None
    mailbox: str | None = None


@dataclass
class ExchangeResult:
    outcome: str  # a core.statuses.ExchangeOutcome
    error: str | None = None
    mailbox: str | None = None
    # Consent comes back through an admin-consent link of the provider's (Microsoft).
    consent_link: bool = False


@dataclass
class AdminConsentInput:
    source: str  # "microsoft-admin-consent" (the redirect) or "admin-said" (the API)
    user_id: str | None = None


@dataclass
class BeginResult:
    ok: bool
    error: str | None = None


class OAuthContract:
    """The sign-in activities of oauth-connection-setup (activities/connections/oauth.py)."""

    @activity.defn(name=BEGIN_OAUTH_AUTHORIZATION)
    def begin_oauth_authorization(self, input: ConnectionRef) -> BeginResult:
        """A new sign-in link with a new single-use state."""
        raise NotImplementedError

    @activity.defn(name=EXCHANGE_OAUTH_CODE)
    def exchange_oauth_code(self, input: ConnectionRef) -> ExchangeResult:
        """Redeem the stored callback."""
        raise NotImplementedError
