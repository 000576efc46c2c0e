"""What the two connection setups (SMTP, and OAuth sign-in) share: their state, the round-trip
test's result and redirect leg, activation, and recording a new state in the database and the
search attributes."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import workflow

from core.run_ids import setup_workflow_id
from core.search_attributes import MAIL_STATUS
from core.statuses import ConnectionStatus
from workflows import policies

# Activities both setups call.
TEST_CONNECTION = "test-connection"
RECORD_REDIRECT_NOT_SEEN = "record-redirect-not-seen"
SET_CONNECTION_STATUS = "set-connection-status"
ACTIVATE_CONNECTION = "activate-connection"
# Signals a setup takes from other runs.
REDIRECT_SEEN = "redirect-seen"  # receive-message recognised this setup's test message
SUPERSEDED = "superseded"  # another connection of the scope was activated


@dataclass
class ConnectionRef:
    """The input of an activity that needs only the connection: it loads the rest."""

    connection_id: str


@dataclass
class TestInput:
    connection_id: str
    # How long the redirect leg waits; the test message's text names it.
    redirect_wait: timedelta = timedelta(minutes=15)


@dataclass
class RedirectInput:
    connection_id: str
    redirect_wait: timedelta = timedelta(minutes=15)


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
    # The send leg passed and the message is on its way back through the redirect.
    redirect_pending: bool = False


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
    status: str = ConnectionStatus.PENDING
    last_error: str | None = None


async def record_status(connection_id: str, status: str, error: str | None) -> SetupState:
    """The new state in the search attributes and in the database."""
    workflow.upsert_search_attributes([MAIL_STATUS.value_set(status)])
    await policies.db_step(SET_CONNECTION_STATUS, StatusInput(connection_id, status, error))
    return SetupState(status=status, last_error=error)


async def activate(input: ActivateInput) -> SetupState:
    """Make the connection its scope's sender (the activity disables the one it replaces and
    cancels the scope's other open setups); tell those setups' runs that they are over."""
    result = await policies.db_step(ACTIVATE_CONNECTION, input, result_type=ActivationResult)
    workflow.upsert_search_attributes([MAIL_STATUS.value_set(ConnectionStatus.ACTIVE)])
    # Runs recorded before activations cancelled other setups got no result here.
    for connection_id in result.cancelled if result else []:
        handle = workflow.get_external_workflow_handle(setup_workflow_id(connection_id))
        try:
            await handle.signal(SUPERSEDED)
        except Exception:  # that run has ended already: nothing to stop
            workflow.logger.info("setup %s had already ended", connection_id)
    return SetupState(status=ConnectionStatus.ACTIVE)


class RedirectLeg:
    """The redirect leg of the latest test: waits, on a durable timer, for the test message to
    come back (the `redirect-seen` signal); if it does not, records why, with instructions.

    Each passing test starts a new round; an older round's timer then ends quietly. The setup's
    run waits for the current round before it returns, even after activation.
    """

    def __init__(self, connection_id: str, wait: timedelta) -> None:
        self._input = RedirectInput(connection_id, wait)
        self._round = 0
        self._seen_round = 0
        self._task: asyncio.Future[None] | None = None

    def start(self) -> None:
        if not workflow.patched("redirect-leg"):
            return  # a run from before the round trip: its test had no redirect leg
        self._round += 1
        self._task = asyncio.ensure_future(self._await(self._round))

    def seen(self) -> None:
        self._seen_round = self._round

    def stop(self) -> None:
        """The setup was cancelled or expired: nobody needs the answer any more."""
        self._round += 1

    @property
    def done(self) -> bool:
        return self._task is None or self._task.done()

    async def _await(self, round: int) -> None:
        try:
            await workflow.wait_condition(
                lambda: self._seen_round >= round or self._round != round,
                timeout=self._input.redirect_wait,
            )
        except TimeoutError:
            if self._round == round:
                await policies.db_step(RECORD_REDIRECT_NOT_SEEN, self._input)
