"""SmtpConnectionSetup: test a custom SMTP connection (a round trip), then activate it, or
expire."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from contracts.connections.setup import (
    ActivateInput,
    ConnectionSetupContract,
    SetupState,
    SmtpSetupInput,
    TestInput,
    VerificationResult,
)
from core.statuses import ConnectionStatus
from workflows import policies
from workflows.connections.setup import ConnectionSetup, RedirectLeg, make_active, record_status


@workflow.defn(name="smtp-connection-setup")
class SmtpConnectionSetupWorkflow(ConnectionSetup):
    """Waits for the admin to test (any number of times) and then activate the connection.

    A test is a round trip: the provider's checks and a real message through the connection
    (the update answers then), and its return through the company's redirect, which this run
    waits for up to `redirect_wait`, after activation too. Ends `active` after activation,
    `cancelled` on cancel or when another connection of the scope is activated, or `expired`
    when nobody activates a passing connection within `expires_after`. The password never
    enters history: the test activity decrypts it from the database.
    """

    @workflow.init
    def __init__(self, input: SmtpSetupInput) -> None:
        self._input = input
        self._state = SetupState()
        self._done = False
        self._testing = False
        self._activating = False
        self._last_test = VerificationResult(ok=False)
        self._superseded = False
        self._redirect = RedirectLeg(input.connection_id, input.redirect_wait)

    def _supersede(self) -> None:
        self._superseded = True

    async def _set(self, status: str, error: str | None = None) -> None:
        # Set first: updates arriving while the activity runs already see the new state.
        self._state = SetupState(status=status, last_error=error)
        await record_status(self._input.connection_id, status, error)

    def _check_open(self) -> None:
        if self._done or self._superseded:
            raise ApplicationError(
                f"This setup has ended ({self._state.status}); create a new connection.",
                type="SetupEnded",
            )

    async def _test(self) -> VerificationResult:
        if self._testing:  # a test is running: its result answers this request too
            await workflow.wait_condition(lambda: not self._testing)
            return self._last_test
        self._testing = True
        try:
            await self._set(ConnectionStatus.TESTING)
            result = await workflow.execute_activity_method(
                ConnectionSetupContract.test_connection,
                TestInput(self._input.connection_id, self._input.redirect_wait),
                start_to_close_timeout=policies.CONNECTION_TEST_TIMEOUT,
                retry_policy=policies.NO_RETRY,
            )
            status = ConnectionStatus.TESTED if result.ok else ConnectionStatus.TEST_FAILED
            await self._set(status, result.error)
            if result.redirect_pending:
                self._redirect.start()
            self._last_test = result
            return result
        finally:
            self._testing = False

    def _check_test(self) -> None:
        self._check_open()
        if self._activating:
            raise ApplicationError(
                "The connection is being activated; it needs no further test.", type="Busy"
            )

    async def _activate(self, input: ActivateInput) -> SetupState:
        self._activating = True
        try:
            self._state = await make_active(input)
        except (ActivityError, ApplicationError) as err:
            # Cancelled meanwhile by another activation: the refusal says so. (A local
            # activity's non-retryable failure arrives as its ApplicationError.)
            cause = err.cause if isinstance(err, ActivityError) else err
            raise ApplicationError(
                cause.message if isinstance(cause, ApplicationError) else str(err),
                type="NotActivated",
            ) from None
        finally:
            self._activating = False
        self._done = True
        return self._state

    def _check_activate(self) -> None:
        self._check_open()
        if self._testing:
            raise ApplicationError(
                "A test is running (testing): activate once it has passed.", type="Busy"
            )
        if self._activating:
            raise ApplicationError("The connection is already being activated.", type="Busy")
        if self._state.status != ConnectionStatus.TESTED:
            raise ApplicationError(
                "Test the connection first: only a connection whose last test passed can be "
                f"activated (it is {self._state.status}). Run the test, and activate once it "
                "passes.",
                type="NotTested",
            )

    async def _cancel_setup(self) -> SetupState:
        await self._set(ConnectionStatus.CANCELLED)
        self._done = True
        return self._state

    def _check_cancel(self) -> None:
        self._check_open()

    @workflow.run
    async def run(self, input: SmtpSetupInput) -> SetupState:
        try:
            await workflow.wait_condition(
                lambda: self._done or self._superseded, timeout=input.expires_after
            )
        except TimeoutError:
            await workflow.wait_condition(lambda: not (self._testing or self._activating))
            if not self._done:
                await self._set(
                    ConnectionStatus.EXPIRED,
                    "The setup was not activated in time; create the connection again.",
                )
                self._done = True
        if self._superseded and not self._done:
            await workflow.wait_condition(lambda: not self._testing)
            self._state = SetupState(
                ConnectionStatus.CANCELLED, "Another connection was activated."
            )
            self._done = True
        if self._state.status != ConnectionStatus.ACTIVE:
            self._redirect.stop()
        await workflow.wait_condition(lambda: self._redirect.done)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._state
