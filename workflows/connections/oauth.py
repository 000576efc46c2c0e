"""OAuthConnectionSetup: sign in with Google or Microsoft, wait for an administrator's consent
for as long as it takes, test, then activate."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from contracts.connections.oauth import (
    AdminConsentInput,
    BeginResult,
    CallbackInput,
    CallbackOutcome,
    ExchangeResult,
    OAuthContract,
    OAuthSetupInput,
)
from contracts.connections.setup import (
    ActivateInput,
    ConnectionRef,
    ConnectionSetupContract,
    SetupState,
    TestInput,
    VerificationResult,
)
from core.statuses import ConnectionStatus, ExchangeOutcome
from workflows import policies
from workflows.connections.setup import ConnectionSetup, RedirectLeg, make_active, record_status

AWAITING_AUTHORIZATION = ConnectionStatus.AWAITING_AUTHORIZATION
AUTHORIZING = ConnectionStatus.AUTHORIZING
AWAITING_ADMIN_CONSENT = ConnectionStatus.AWAITING_ADMIN_CONSENT
AUTHORIZED = ConnectionStatus.AUTHORIZED
TESTED = ConnectionStatus.TESTED
TEST_FAILED = ConnectionStatus.TEST_FAILED
FAILED = ConnectionStatus.FAILED
EXPIRED = ConnectionStatus.EXPIRED
CANCELLED = ConnectionStatus.CANCELLED

A = TypeVar("A")
T = TypeVar("T")

# Patch: complete-authorization answers once the new state is in the database (runs recorded
# before it answered as soon as the exchange was done).


@workflow.defn(name="oauth-connection-setup")
class OAuthConnectionSetupWorkflow(ConnectionSetup):
    """Waits for the sign-in callback (`signin_wait`), then for an administrator's consent when
    the provider asks for one (`consent_wait`, days if need be), then for activation.

    Ends `active`, `failed` (a wrong mailbox, a declined or refused sign-in), `expired` (a wait
    ran out) or `cancelled`. Codes, PKCE verifiers and tokens never enter history: the API
    stores the callback encrypted, and activities read it by connection id.
    """

    @workflow.init
    def __init__(self, input: OAuthSetupInput) -> None:
        self._input = input
        self._state = SetupState(status=AWAITING_AUTHORIZATION)
        self._link_ready = False
        self._callback: str | None = None
        self._outcomes: dict[str, CallbackOutcome] = {}
        self._consent = False
        self._cancel = False
        self._activation: ActivateInput | None = None
        self._done = False
        self._testing = False
        self._last_test = VerificationResult(ok=False)
        self._cancel_reason: str | None = None
        # The provider sent an admin-consent link that calls us back (Microsoft).
        self._consent_link = False
        self._redirect = RedirectLeg(input.connection_id, input.redirect_wait)
        self._recorded: str | None = None  # the last state written to the database

    def _supersede(self) -> None:
        self._cancel = True
        self._cancel_reason = "Another connection of this scope was activated."

    # -- updates ------------------------------------------------------------------------

    @workflow.update(name="wait-for-sign-in-link")
    async def wait_for_sign_in_link(self) -> SetupState:
        """Answers once the authorization URL is stored (or the setup could not begin)."""
        await workflow.wait_condition(lambda: self._link_ready or self._done)
        return self._state

    @workflow.update(name="complete-authorization")
    async def complete_authorization(self, input: CallbackInput) -> CallbackOutcome:
        self._callback = input.nonce
        await workflow.wait_condition(lambda: input.nonce in self._outcomes)
        outcome = self._outcomes[input.nonce]
        # The browser goes on to the setup's page, which reads the database: answer once the
        # state after this sign-in is recorded there.
        await workflow.wait_condition(lambda: self._recorded == outcome.status or self._done)
        return outcome

    @complete_authorization.validator
    def _validate_callback(self, input: CallbackInput) -> None:
        self._expect(
            (AWAITING_AUTHORIZATION, AWAITING_ADMIN_CONSENT),
            "This setup is not waiting for a sign-in",
            "NotWaiting",
            busy=self._callback is not None,
        )

    @workflow.update(name="admin-consent-granted")
    async def admin_consent_granted(self, input: AdminConsentInput) -> SetupState:
        self._consent = True
        await workflow.wait_condition(
            lambda: self._state.status != AWAITING_ADMIN_CONSENT or self._done
        )
        await workflow.wait_condition(lambda: self._link_ready or self._done)
        return self._state

    @admin_consent_granted.validator
    def _validate_admin_consent(self, input: AdminConsentInput) -> None:
        self._expect(
            (AWAITING_ADMIN_CONSENT,),
            "This setup is not waiting for an administrator's consent",
            "NotWaiting",
        )

    async def _test(self) -> VerificationResult:
        if self._testing or self._state.status == AUTHORIZED:
            # The test after sign-in, or another request's: its result answers this one too.
            await workflow.wait_condition(
                lambda: not self._testing and self._state.status != AUTHORIZED
            )
            return self._last_test
        return await self._run_test()

    def _check_test(self) -> None:
        self._check_open()
        if self._testing or self._state.status in (AUTHORIZED, TESTED, TEST_FAILED):
            return
        raise ApplicationError(_NOT_TESTABLE.get(self._state.status, _ENDED), type="NotTestable")

    async def _activate(self, input: ActivateInput) -> SetupState:
        self._activation = input
        await workflow.wait_condition(lambda: self._done)
        return self._state

    def _check_activate(self) -> None:
        self._check_open()
        if self._activation is not None:
            raise ApplicationError("The connection is already being activated.", type="Busy")
        if self._testing:
            raise ApplicationError(
                f"A test is running ({self._state.status}): activate once it has passed.",
                type="Busy",
            )
        if self._state.status == TESTED:
            return
        if self._state.status == TEST_FAILED:
            raise ApplicationError(
                "The last test failed (test_failed): fix what its steps say, test again, and "
                "activate once it passes.",
                type="NotTested",
            )
        raise ApplicationError(_NOT_TESTABLE.get(self._state.status, _ENDED), type="NotTested")

    async def _cancel_setup(self) -> SetupState:
        self._cancel = True
        await workflow.wait_condition(lambda: self._done)
        return self._state

    def _check_cancel(self) -> None:
        self._check_open()
        if self._cancel:
            raise ApplicationError("The setup is already being cancelled.", type="SetupEnded")

    def _expect(
        self, statuses: tuple[str, ...], refusal: str, kind: str, *, busy: bool = False
    ) -> None:
        """An update's validator: refuse (nothing enters history) unless the setup is open,
        idle, and in one of `statuses`."""
        self._check_open()
        if busy or self._state.status not in statuses:
            raise ApplicationError(f"{refusal} (it is {self._state.status}).", type=kind)

    def _check_open(self) -> None:
        if self._done:
            raise ApplicationError(
                f"This setup has ended ({self._state.status}).", type="SetupEnded"
            )

    # -- the process: sign in (with consent if needed), test, wait for activation ------------

    @workflow.run
    async def run(self, input: OAuthSetupInput) -> SetupState:
        if await self._sign_in(input):
            await self._test_and_activate(input)
        self._done = True
        if self._state.status != ConnectionStatus.ACTIVE:
            self._redirect.stop()
        await workflow.wait_condition(lambda: self._redirect.done)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._state

    async def _sign_in(self, input: OAuthSetupInput) -> bool:
        """Until the mailbox is authorized (True), or the setup ended (False).

        Each round issues a link and waits for the browser; an administrator's consent
        starts a new round, a sign-in to repeat too."""
        awaiting_consent = False
        while True:
            if not await self._begin(awaiting_consent):
                return False
            if not await self._wait_for_browser(input, awaiting_consent):
                return False
            if self._consent:  # the administrator approved: the person signs in again
                self._consent = False
                awaiting_consent = False
                # Why consent was needed no longer holds: the next state carries no reason.
                self._state = SetupState(status=self._state.status)
                continue
            status = await self._redeem()
            if status == AUTHORIZED:
                return True
            if status == FAILED:
                return False
            awaiting_consent = status == AWAITING_ADMIN_CONSENT

    async def _wait_for_browser(self, input: OAuthSetupInput, awaiting_consent: bool) -> bool:
        """A callback or a consent arrived (True); the wait expired or was cancelled (False)."""
        wait = input.consent_wait if awaiting_consent else input.signin_wait
        try:
            await workflow.wait_condition(
                lambda: self._cancel or self._callback is not None or self._consent,
                timeout=wait,
            )
        except TimeoutError:
            await self._set(EXPIRED, _expiry_text(awaiting_consent, wait))
            return False
        if self._cancel:
            await self._set(CANCELLED, self._cancel_reason)
            return False
        return True

    async def _redeem(self) -> str:
        """Exchange the callback's code; answer the waiting callback with the new state."""
        nonce = self._callback
        await self._set(AUTHORIZING)
        result = await self._exchange()
        self._callback = None
        status = {
            ExchangeOutcome.CONSENT_REQUIRED: AWAITING_ADMIN_CONSENT,
            ExchangeOutcome.RETRY_SIGNIN: AWAITING_AUTHORIZATION,
            ExchangeOutcome.FAILED: FAILED,
        }.get(ExchangeOutcome(result.outcome), AUTHORIZED)
        self._consent_link = result.consent_link
        if nonce is not None:
            self._outcomes[nonce] = CallbackOutcome(status, result.error, result.mailbox)
        if status == FAILED:
            await self._set(FAILED, result.error)
        elif status != AUTHORIZED:
            # Consent required, or a sign-in to repeat: keep the explanation for the next link.
            self._state = SetupState(status=status, last_error=result.error)
        return status

    async def _test_and_activate(self, input: OAuthSetupInput) -> None:
        await self._set(AUTHORIZED)
        test = await self._run_test()
        if input.reconnect and test.ok and input.user_id:
            self._activation = ActivateInput(input.connection_id, input.user_id)
        try:
            await workflow.wait_condition(
                lambda: self._cancel or (self._activation is not None and not self._testing),
                timeout=input.activation_wait,
            )
        except TimeoutError:
            await workflow.wait_condition(lambda: not self._testing)
            await self._set(
                EXPIRED, "The connection was not activated in time; connect the mailbox again."
            )
            return
        if self._cancel or self._activation is None:
            await workflow.wait_condition(lambda: not self._testing)
            await self._set(CANCELLED, self._cancel_reason)
            return
        try:
            self._state = await make_active(self._activation)
        except (ActivityError, ApplicationError) as err:  # cancelled by another activation
            await self._set(
                CANCELLED, err.message if isinstance(err, ApplicationError) else _cause(err)
            )

    async def _begin(self, awaiting_consent: bool) -> bool:
        """Issue a sign-in link (a new state), unless Microsoft's admin-consent link is out."""
        self._link_ready = False
        if awaiting_consent and self._consent_link:
            # The exchange stored the admin-consent link; its state is the one now valid.
            await self._set(AWAITING_ADMIN_CONSENT, self._state.last_error)
            self._link_ready = True
            return True
        result = await self._provider_call(
            OAuthContract.begin_oauth_authorization,
            self._ref,
            lambda reason: BeginResult(ok=False, error=reason),
            retry=policies.OAUTH_CALL_RETRY,
            schedule_to_close=policies.OAUTH_CALL_SCHEDULE_TO_CLOSE,
        )
        if not result.ok:
            await self._set(FAILED, result.error)
            self._link_ready = True
            return False
        status = AWAITING_ADMIN_CONSENT if awaiting_consent else AWAITING_AUTHORIZATION
        await self._set(status, self._state.last_error)
        self._link_ready = True
        return True

    async def _exchange(self) -> ExchangeResult:
        # An authorization code is single-use: a retried exchange could only fail.
        return await self._provider_call(
            OAuthContract.exchange_oauth_code,
            self._ref,
            lambda reason: ExchangeResult(outcome=ExchangeOutcome.RETRY_SIGNIN, error=reason),
        )

    async def _run_test(self) -> VerificationResult:
        """The round trip; the update and the test after sign-in both come here, one at once."""
        self._testing = True
        try:
            result = await self._provider_call(
                ConnectionSetupContract.test_connection,
                TestInput(self._input.connection_id, self._input.redirect_wait),
                lambda reason: VerificationResult(ok=False, error=reason),
            )
            await self._set(TESTED if result.ok else TEST_FAILED, result.error)
            if result.redirect_pending:
                self._redirect.start()
            self._last_test = result
            return result
        finally:
            self._testing = False

    @property
    def _ref(self) -> ConnectionRef:
        return ConnectionRef(self._input.connection_id)

    async def _provider_call(
        self,
        activity: Callable[[Any, A], Awaitable[T]] | Callable[[Any, A], T],
        arg: A,
        failed: Callable[[str], T],
        *,
        retry: RetryPolicy = policies.NO_RETRY,
        schedule_to_close: timedelta | None = None,
    ) -> T:
        """One activity that talks to the identity provider. When it fails for good,
        `failed(reason)` stands for its result, and the setup goes on."""
        try:
            return await workflow.execute_activity_method(
                activity,
                arg,
                start_to_close_timeout=policies.OAUTH_CALL_TIMEOUT,
                schedule_to_close_timeout=schedule_to_close,
                retry_policy=retry,
            )
        except ActivityError as err:
            return failed(_cause(err))

    async def _set(self, status: str, error: str | None = None) -> None:
        # Set first: updates arriving while the activity runs already see the new state.
        self._state = SetupState(status=status, last_error=error)
        await record_status(self._input.connection_id, status, error)
        self._recorded = status


# Why a setup cannot be tested or activated yet, and what comes next: by its state.
_NOT_TESTABLE: dict[str, str] = {
    AWAITING_AUTHORIZATION: (
        "The mailbox has not signed in yet (awaiting_authorization): open the sign-in link "
        "(authorization_url). The test runs by itself right after the sign-in."
    ),
    AUTHORIZING: (
        "The sign-in is being completed (authorizing). The test runs by itself right after."
    ),
    AWAITING_ADMIN_CONSENT: (
        "An administrator must approve Recruitmail first (awaiting_admin_consent): forward the "
        "admin-consent link. The test runs by itself after the next sign-in."
    ),
}
_ENDED = "This setup has ended; connect the mailbox again with a new connection."


def _expiry_text(awaiting_consent: bool, wait: timedelta) -> str:
    if awaiting_consent:
        return (
            f"No administrator approved Recruitmail within {_days(wait)}; connect the mailbox "
            "again once the administrator is ready."
        )
    return f"Nobody signed in within {_days(wait)}; connect the mailbox again."


def _days(wait: timedelta) -> str:
    seconds = int(wait.total_seconds())
    if seconds >= 86400 and seconds % 86400 == 0:
        return f"{seconds // 86400} days"
    if seconds >= 3600:
        return f"{seconds / 3600:g} hours"
    if seconds >= 60:
        return f"{seconds // 60} minutes"
    return f"{seconds} seconds"


def _cause(err: ActivityError) -> str:
    cause = err.cause
    if isinstance(cause, ApplicationError):
        return cause.message
    return "The provider could not be reached; try again."
