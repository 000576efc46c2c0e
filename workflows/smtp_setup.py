"""SmtpConnectionSetup: test a custom SMTP connection, then activate it, or expire."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from core.statuses import ConnectionStatus
from workflows import policies
from workflows.setup import (
    TEST_CONNECTION,
    ActivateInput,
    ConnectionRef,
    SetupState,
    VerificationResult,
    activate,
    record_status,
)


@dataclass
class SmtpSetupInput:
    connection_id: str
    company_id: str
    expires_after: timedelta = timedelta(days=7)


@workflow.defn(name="smtp-connection-setup")
class SmtpConnectionSetupWorkflow:
    """Waits for the admin to test (any number of times) and then activate the connection.

    Ends `active` after activation, `cancelled` on cancel, or `expired` when nobody activates a
    passing connection within `expires_after`. The password never enters history: the test
    activity decrypts it from the database.
    """

    @workflow.init
    def __init__(self, input: SmtpSetupInput) -> None:
        self._input = input
        self._state = SetupState()
        self._done = False
        self._busy = False

    @workflow.query(name="state")
    def state(self) -> SetupState:
        return self._state

    async def _set(self, status: str, error: str | None = None) -> None:
        # Set first: updates arriving while the activity runs already see the new state.
        self._state = SetupState(status=status, last_error=error)
        await record_status(self._input.connection_id, status, error)

    def _check_open(self) -> None:
        if self._done:
            raise ApplicationError(
                f"This setup has ended ({self._state.status}).", type="SetupEnded"
            )
        if self._busy:
            raise ApplicationError("A test or activation is already running.", type="Busy")

    @workflow.update(name="test")
    async def test(self) -> VerificationResult:
        self._busy = True
        try:
            await self._set(ConnectionStatus.TESTING)
            result: VerificationResult = await workflow.execute_activity(
                TEST_CONNECTION,
                ConnectionRef(self._input.connection_id),
                result_type=VerificationResult,
                start_to_close_timeout=policies.CONNECTION_TEST_TIMEOUT,
                retry_policy=policies.NO_RETRY,
            )
            status = ConnectionStatus.TESTED if result.ok else ConnectionStatus.TEST_FAILED
            await self._set(status, result.error)
            return result
        finally:
            self._busy = False

    @test.validator
    def _validate_test(self) -> None:
        self._check_open()

    @workflow.update(name="activate")
    async def activate(self, input: ActivateInput) -> SetupState:
        self._busy = True
        try:
            self._state = await activate(input)
            self._done = True
            return self._state
        finally:
            self._busy = False

    @activate.validator
    def _validate_activate(self, input: ActivateInput) -> None:
        self._check_open()
        if self._state.status != ConnectionStatus.TESTED:
            raise ApplicationError(
                "Test the connection first: only a connection whose last test passed can be "
                f"activated (it is {self._state.status}).",
                type="NotTested",
            )

    @workflow.update(name="cancel")
    async def cancel(self) -> SetupState:
        await self._set(ConnectionStatus.CANCELLED)
        self._done = True
        return self._state

    @cancel.validator
    def _validate_cancel(self) -> None:
        self._check_open()

    @workflow.run
    async def run(self, input: SmtpSetupInput) -> SetupState:
        try:
            await workflow.wait_condition(lambda: self._done, timeout=input.expires_after)
        except TimeoutError:
            await workflow.wait_condition(lambda: not self._busy)
            if not self._done:
                await self._set(
                    ConnectionStatus.EXPIRED,
                    "The setup was not activated in time; create the connection again.",
                )
                self._done = True
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._state
