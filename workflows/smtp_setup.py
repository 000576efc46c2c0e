"""SmtpConnectionSetup: test a custom SMTP connection, then activate it, or expire."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from workflows import policies
from workflows.search_attributes import MAIL_STATUS


def setup_workflow_id(connection_id: str) -> str:
    return f"connection-setup-{connection_id}"


@dataclass
class SmtpSetupInput:
    connection_id: str
    company_id: str
    expires_after: timedelta = timedelta(days=7)


@dataclass
class VerificationStep:
    name: str
    status: str  # ok, failed, skipped
    detail: str = ""


@dataclass
class VerificationResult:
    ok: bool
    steps: list[VerificationStep] = field(default_factory=list)
    error: str | None = None


@dataclass
class ActivateInput:
    connection_id: str
    user_id: str


@dataclass
class StatusInput:
    connection_id: str
    status: str
    error: str | None = None


@dataclass
class SetupState:
    status: str = "pending"
    last_error: str | None = None


async def record_status(connection_id: str, status: str, error: str | None) -> SetupState:
    """Both setup workflows: the new state in the search attributes and in the database."""
    workflow.upsert_search_attributes([MAIL_STATUS.value_set(status)])
    await workflow.execute_local_activity(
        "set-connection-status",
        StatusInput(connection_id, status, error),
        start_to_close_timeout=policies.DB_STEP_TIMEOUT,
        schedule_to_close_timeout=policies.DB_STEP_SCHEDULE_TO_CLOSE,
        retry_policy=policies.DB_STEP_RETRY,
    )
    return SetupState(status=status, last_error=error)


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
            await self._set("testing")
            result = await workflow.execute_activity(
                "verify-smtp-connection",
                self._input.connection_id,
                result_type=VerificationResult,
                start_to_close_timeout=policies.CONNECTION_TEST_TIMEOUT,
                retry_policy=policies.NO_RETRY,
            )
            await self._set("tested" if result.ok else "test_failed", result.error)
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
            await workflow.execute_local_activity(
                "activate-connection",
                input,
                start_to_close_timeout=policies.DB_STEP_TIMEOUT,
                schedule_to_close_timeout=policies.DB_STEP_SCHEDULE_TO_CLOSE,
                retry_policy=policies.DB_STEP_RETRY,
            )
            self._state = SetupState(status="active")
            workflow.upsert_search_attributes([MAIL_STATUS.value_set("active")])
            self._done = True
            return self._state
        finally:
            self._busy = False

    @activate.validator
    def _validate_activate(self, input: ActivateInput) -> None:
        self._check_open()
        if self._state.status != "tested":
            raise ApplicationError(
                "Test the connection first: only a connection whose last test passed can be "
                f"activated (it is {self._state.status}).",
                type="NotTested",
            )

    @workflow.update(name="cancel")
    async def cancel(self) -> SetupState:
        await self._set("cancelled")
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
                    "expired",
                    "The setup was not activated in time; create the connection again.",
                )
                self._done = True
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._state
