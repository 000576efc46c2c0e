"""What the two connection setups (SMTP, and OAuth sign-in) share: their handlers (one base
class), the round-trip test's redirect leg, activation, and recording a new state in the
database and the search attributes."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow

from contracts.connections.setup import (
    REDIRECT_SEEN,
    SUPERSEDED,
    ActivateInput,
    ConnectionRef,
    ConnectionSetupContract,
    RedirectInput,
    SetupState,
    StatusInput,
    VerificationResult,
)
from core.run_ids import setup_workflow_id
from core.search_attributes import MAIL_STATUS
from core.statuses import ConnectionStatus
from workflows import policies


class ConnectionSetup:
    """What both setup workflows answer, as one base class (not a workflow itself): the
    `state` query, the `redirect-seen` and `superseded` signals, and the updates the API sends
    to either setup (`test`, `activate`, `cancel`), whose work and validation each setup
    supplies (`_test`, `_check_test`, ...). The API calls the updates through this class, so
    one typed call serves both."""

    _state: SetupState
    _redirect: RedirectLeg

    @workflow.query(name="state")
    def state(self) -> SetupState:
        return self._state

    @workflow.signal(name=REDIRECT_SEEN)
    def redirect_seen(self) -> None:
        self._redirect.seen()

    @workflow.signal(name=SUPERSEDED)
    def superseded(self) -> None:
        self._supersede()

    def _supersede(self) -> None:
        """Another connection of the scope was activated: this setup is over."""
        raise NotImplementedError

    @workflow.update(name="test")
    async def test(self) -> VerificationResult:
        """Run the round-trip test; answers with its result (the redirect leg goes on)."""
        return await self._test()

    @test.validator
    def _validate_test(self) -> None:
        self._check_test()

    @workflow.update(name="activate")
    async def activate(self, input: ActivateInput) -> SetupState:
        """Make the tested connection its scope's sender."""
        return await self._activate(input)

    @activate.validator
    def _validate_activate(self, input: ActivateInput) -> None:
        self._check_activate()

    @workflow.update(name="cancel")
    async def cancel(self) -> SetupState:
        return await self._cancel_setup()

    @cancel.validator
    def _validate_cancel(self) -> None:
        self._check_cancel()

    # Each setup's own part. A `_check_…` raises an ApplicationError saying why not (a
    # refused update leaves nothing in history).

    async def _test(self) -> VerificationResult:
        raise NotImplementedError

    def _check_test(self) -> None:
        raise NotImplementedError

    async def _activate(self, input: ActivateInput) -> SetupState:
        raise NotImplementedError

    def _check_activate(self) -> None:
        raise NotImplementedError

    async def _cancel_setup(self) -> SetupState:
        raise NotImplementedError

    def _check_cancel(self) -> None:
        raise NotImplementedError


async def record_status(connection_id: str, status: str, error: str | None) -> SetupState:
    """The new state in the search attributes and in the database."""
    workflow.upsert_search_attributes([MAIL_STATUS.value_set(status)])
    await policies.db_step(
        ConnectionSetupContract.set_connection_status, StatusInput(connection_id, status, error)
    )
    return SetupState(status=status, last_error=error)


async def make_active(input: ActivateInput) -> SetupState:
    """Make the connection its scope's sender (the activity disables the one it replaces and
    cancels the scope's other open setups); tell those setups' runs that they are over."""
    result = await policies.db_step(ConnectionSetupContract.activate_connection, input)
    workflow.upsert_search_attributes([MAIL_STATUS.value_set(ConnectionStatus.ACTIVE)])
    for connection_id in result.cancelled:
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
                await conclude_not_seen(self._input)


async def conclude_not_seen(input: RedirectInput) -> None:
    """The check message did not come back in time: record why (the activity knows whether a
    newer check took over), and tell the admins when a live connection's redirect stopped."""
    outcome = await policies.db_step(ConnectionSetupContract.record_redirect_not_seen, input)
    if outcome is not None and outcome.tell_admins:
        await tell_admins(input.connection_id)


async def tell_admins(connection_id: str) -> None:
    """Email the company's admins that a way replies come in stopped working (retried for a
    day, as notifications are)."""
    await workflow.execute_activity_method(
        ConnectionSetupContract.tell_admins_inbound_failing,
        ConnectionRef(connection_id),
        start_to_close_timeout=policies.DELIVERY_ATTEMPT_TIMEOUT,
        schedule_to_close_timeout=policies.NOTIFY_SCHEDULE_TO_CLOSE,
        retry_policy=policies.delivery_retry(
            policies.NOTIFY_RETRY_INITIAL, policies.NOTIFY_RETRY_MAX
        ),
    )
