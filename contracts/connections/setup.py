"""What both connection setups (smtp-connection-setup, oauth-connection-setup) share with the
API and their activities: the updates, signals and query they answer, and the activities of
the round-trip test, status changes and activation."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import activity

TEST_CONNECTION = "test-connection"
RECORD_REDIRECT_NOT_SEEN = "record-redirect-not-seen"
TELL_ADMINS_INBOUND_FAILING = "tell-admins-inbound-failing"
CHECK_REDIRECT = "check-redirect"
FIND_REDIRECTS_TO_RECHECK = "find-redirects-to-recheck"
SET_CONNECTION_STATUS = "set-connection-status"
ACTIVATE_CONNECTION = "activate-connection"
# Signals a setup takes from other runs.
REDIRECT_SEEN = "redirect-seen"  # receive-message recognised this setup's check message
SUPERSEDED = "superseded"  # another connection of the scope was activated


@dataclass
class SmtpSetupInput:
    connection_id: str
    company_id: str
    expires_after: timedelta = timedelta(days=7)
    redirect_wait: timedelta = timedelta(minutes=15)


@dataclass
class ConnectionRef:
    """The input of an activity that needs only the connection: it loads the rest."""

    connection_id: str


@dataclass
class TestInput:
    connection_id: str
    # How long the redirect leg waits; the check message's text names it.
    redirect_wait: timedelta = timedelta(minutes=15)


@dataclass
class RedirectInput:
    connection_id: str
    redirect_wait: timedelta = timedelta(minutes=15)


@dataclass
class RecheckInput:
    """A live connection's redirect checked again (inbound-check-{connection id})."""

    connection_id: str
    company_id: str
    redirect_wait: timedelta = timedelta(minutes=15)


@dataclass
class RecheckPage:
    """Live connections whose redirect is to be checked again, after `after` (an id), in
    id order."""

    after: str = ""
    limit: int = 200
    redirect_wait: timedelta = timedelta(minutes=15)
    # One company's only (an operator checking a company again by hand); empty: all.
    company_id: str = ""


@dataclass
class RecheckBatch:
    checks: list[RecheckInput] = field(default_factory=list)
    more: bool = False
    after: str = ""  # the next page starts after this id


@dataclass
class VerificationStep:
    name: str
    status: str  # a core.statuses.StepStatus
    detail: str = ""


@dataclass
class VerificationResult:
    ok: bool
    steps: list[VerificationStep] = field(default_factory=list)
    error: str | None = None
    # The send leg passed and the check message is on its way back through the redirect.
    redirect_pending: bool = False


@dataclass
class RedirectOutcome:
    """How a wait for the check message ended, when it changed anything."""

    # The redirect of a live connection stopped working and its admins are to be told.
    tell_admins: bool = False
    # A check message is on its way (a re-check): the run waits for it.
    waiting: bool = False


@dataclass
class ActivateInput:
    connection_id: str
    user_id: str


@dataclass
class ActivationResult:
    """The other open setups of the scope that this activation cancelled."""

    cancelled: list[str] = field(default_factory=list)


@dataclass
class StatusInput:
    connection_id: str
    status: str
    error: str | None = None


@dataclass
class SetupState:
    status: str = "pending"  # a core.statuses.ConnectionStatus
    last_error: str | None = None


class ConnectionSetupContract:
    """The activities both setups call (activities/connections/setup.py)."""

    @activity.defn(name=TEST_CONNECTION)
    async def test_connection(self, input: TestInput) -> VerificationResult:
        """The provider's checks and both legs of the round trip."""
        raise NotImplementedError

    @activity.defn(name=RECORD_REDIRECT_NOT_SEEN)
    def record_redirect_not_seen(self, input: RedirectInput) -> RedirectOutcome | None:
        raise NotImplementedError

    @activity.defn(name=TELL_ADMINS_INBOUND_FAILING)
    async def tell_admins_inbound_failing(self, input: ConnectionRef) -> None:
        """Email the company's admins that a way replies come in stopped working."""
        raise NotImplementedError

    @activity.defn(name=CHECK_REDIRECT)
    async def check_redirect(self, input: RedirectInput) -> RedirectOutcome:
        """The redirect leg alone, for a live connection: True when a check message is on
        its way (the run waits for it); False when the outcome is recorded already."""
        raise NotImplementedError

    @activity.defn(name=FIND_REDIRECTS_TO_RECHECK)
    def find_redirects_to_recheck(self, input: RecheckPage) -> RecheckBatch:
        raise NotImplementedError

    @activity.defn(name=SET_CONNECTION_STATUS)
    def set_connection_status(self, input: StatusInput) -> None:
        raise NotImplementedError

    @activity.defn(name=ACTIVATE_CONNECTION)
    def activate_connection(self, input: ActivateInput) -> ActivationResult:
        raise NotImplementedError
