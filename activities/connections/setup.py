"""Activities of the connection setups: the round-trip test, status changes, activation."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, col, select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.accounts import Accounts
from activities.common import send_platform_mail
from contracts.connections.setup import (
    ACTIVATE_CONNECTION,
    CHECK_REDIRECT,
    FIND_REDIRECTS_TO_RECHECK,
    RECORD_REDIRECT_NOT_SEEN,
    SET_CONNECTION_STATUS,
    TELL_ADMINS_INBOUND_FAILING,
    TEST_CONNECTION,
    ActivateInput,
    ActivationResult,
    ConnectionRef,
    ConnectionSetupContract,
    RecheckBatch,
    RecheckInput,
    RecheckPage,
    RedirectInput,
    RedirectOutcome,
    StatusInput,
    TestInput,
    VerificationResult,
    VerificationStep,
)
from core import events
from core.audit import record_connection
from core.connections import ownership, round_trip
from core.db import get_or_fail, session_scope
from core.errors import MailError
from core.inbound_paths import paths as inbound_paths
from core.models import Company, Connection, MailboxSync, utcnow
from core.notify import inbound_path_notice
from core.people import company_admins
from core.resolver import DnsUnavailable
from core.statuses import (
    LIVE_STATUSES,
    SETUP_STATUSES,
    ConnectionStatus,
    InboundPath,
    PathState,
    RedirectStatus,
    StepStatus,
)
from providers import exchanger
from providers.base import Account, MailProvider, Outgoing, Step, Verification

_WAITING_FOR_BROWSER = (
    ConnectionStatus.AWAITING_AUTHORIZATION,
    ConnectionStatus.AWAITING_ADMIN_CONSENT,
)
_ENDED = (ConnectionStatus.FAILED, ConnectionStatus.EXPIRED, ConnectionStatus.CANCELLED)
# The steps the round trip adds to a provider's own verification steps.
SEND, REDIRECT = "send", "redirect"


@dataclass(frozen=True)
class _Subject:
    """What a test needs of a connection and its company, loaded once."""

    kind: str
    account: Account
    company_id: str
    company_name: str
    hosted: str
    refusal: str | None  # why this address cannot be connected by this company at all


def _via(found: exchanger.Routing) -> str:
    if not found.exchangers:
        return "through the platform's mail transport"
    return f"to its mail exchanger {found.exchangers[0].label}"


def _minutes(input: TestInput | RedirectInput) -> int:
    return max(1, round(input.redirect_wait.total_seconds() / 60))


def _not_seen(
    session: Session, connection: Connection, detail: str, *, keep_blocked: bool = False
) -> RedirectOutcome:
    """The redirect is not seen (a re-check that could not go keeps a `blocked` verdict),
    with the reason, its step and its event; whether the admins are to be told."""
    if not (keep_blocked and connection.redirect_status == RedirectStatus.BLOCKED):
        connection.redirect_status = RedirectStatus.NOT_SEEN
    connection.redirect_checked_at = utcnow()
    connection.redirect_detail = detail
    connection.steps = _with_step(connection.steps, Step(REDIRECT, StepStatus.WARNING, detail))
    connection.updated_at = utcnow()
    session.add(connection)
    events.redirect_checked(session, connection)
    return RedirectOutcome(tell_admins=inbound_paths.redirect_failing(session, connection))


def _with_step(steps: list[dict[str, Any]], step: Step) -> list[dict[str, Any]]:
    """The steps with `step` in place of the one of the same name (or added at the end)."""
    kept = [s for s in steps if s["name"] != step.name]
    return [*kept, asdict(step)]


class ConnectionActivities(ConnectionSetupContract):
    def __init__(self, engine: Engine, accounts: Accounts) -> None:
        self._engine = engine
        self._accounts = accounts
        self._settings = accounts.settings

    # -- the round-trip test -----------------------------------------------------------------

    @activity.defn(name=TEST_CONNECTION)
    async def test_connection(self, input: TestInput) -> VerificationResult:
        """The provider's verification steps, then the round trip's two legs: a test message
        through the connection (the send leg), and the platform's check message to the
        address's mail exchanger (the redirect leg), which the workflow waits to see come
        back."""
        subject = await asyncio.to_thread(self._load, input.connection_id)
        provider = self._accounts.provider(subject.kind)
        if subject.refusal:
            steps = [Step("address", StepStatus.FAILED, subject.refusal)]
            result = Verification(ok=False, steps=steps, error=subject.refusal)
        else:
            result = await provider.verify(subject.account)
        steps = list(result.steps)
        error = result.error
        if result.ok:
            send = await self._send_leg(provider, subject)
            steps.append(send)
            if send.status == StepStatus.OK:
                steps.append(await self._redirect_leg(input, subject))
            else:
                error = send.detail
                steps.append(Step(REDIRECT, StepStatus.SKIPPED, "Not tried: sending failed."))
        else:
            steps.append(Step(SEND, StepStatus.SKIPPED, "Not tried: an earlier step failed."))
        ok = error is None
        kept = provider.setup_steps()

        def store() -> None:
            with session_scope(self._engine) as session:
                connection = get_or_fail(session, Connection, input.connection_id)
                previous = [s for s in connection.steps if s["name"] in kept]
                connection.steps = previous + [asdict(step) for step in steps]
                connection.tested_at = utcnow()
                connection.last_error = error
                connection.updated_at = utcnow()
                session.add(connection)

        await asyncio.to_thread(store)
        return VerificationResult(
            ok=ok,
            steps=[VerificationStep(**asdict(step)) for step in steps],
            error=error,
            redirect_pending=ok and steps[-1].status == StepStatus.WAITING,
        )

    def _load(self, connection_id: str) -> _Subject:
        with Session(self._engine) as session:
            connection = get_or_fail(session, Connection, connection_id)
            company = get_or_fail(session, Company, connection.company_id)
            return _Subject(
                kind=connection.kind,
                account=self._accounts.account(connection),
                company_id=str(company.id),
                company_name=company.name,
                hosted=self._settings.hosted_address(company.slug),
                refusal=ownership.refusal(session, self._settings, connection),
            )

    async def _send_leg(self, provider: MailProvider, subject: _Subject) -> Step:
        """A test message through the connection, from the custom address to itself. It
        proves sending; it carries no token, since it travels through a server the company
        chose."""
        address = subject.account.address
        composed = round_trip.compose_send_test(
            address=address,
            name=subject.company_name,
            hosted=subject.hosted,
            domain=self._settings.platform_mail_domain,
            now=utcnow(),
        )
        try:
            answer = await provider.send(
                subject.account, Outgoing.of(composed, "send-test", subject.company_id)
            )
        except MailError as err:
            detail = provider.explain_send_failure(err, address, subject.account.mailbox)
            return Step(SEND, StepStatus.FAILED, detail)
        said = f" (the server said: {' '.join(answer.split())[:160]})." if answer else "."
        return Step(
            SEND,
            StepStatus.OK,
            f"A test message went from {address} to {address} through the connection{said}",
        )

    async def _redirect_leg(self, input: TestInput | RedirectInput, subject: _Subject) -> Step:
        """The platform's check message, with a new single-use token, to the custom address's
        mail exchanger. Only the address's own mail routing can bring it back to the hosted
        address, where the inbound path recognises the token and records the proof."""
        address = subject.account.address
        domain = address.rpartition("@")[2]
        found = await exchanger.routing(self._settings, domain)
        if found.refusal:
            detail = f"{found.refusal} Mail to {address} cannot arrive anywhere."
            await asyncio.to_thread(self._not_checked, input.connection_id, detail)
            return Step(REDIRECT, StepStatus.WARNING, detail)
        own = [e for e in found.exchangers if e.host.lower() in self._settings.own_exchangers()]
        if own and not found.override:
            return await self._domain_record_leg(input, subject, own[0].label)
        token = round_trip.new_token()
        composed = round_trip.compose_check(
            address=address,
            company=subject.company_name,
            hosted=subject.hosted,
            sender=self._settings.platform_sender,
            token=token,
            domain=self._settings.platform_mail_domain,
            now=utcnow(),
        )
        check_hash = round_trip.token_hash(token)
        # Its delivery reports come back to the hosted domain (the redirect's refusal is heard
        # of). Filed under no company: a company reading its dev outbox (a staging deployment)
        # must never see the token it is to prove it cannot get.
        mail = Outgoing(
            composed.mime,
            round_trip.bounce_address(self._settings.platform_mail_domain, check_hash),
            composed.envelope_to,
            "check",
            company_id="",
        )
        via = _via(found)
        exchanger_host = found.exchangers[0].host if found.exchangers else None
        # Armed before it goes out: a fast redirect may bring it back within the second.
        verified = await asyncio.to_thread(
            self._arm, input, check_hash, subject.hosted, via, exchanger_host
        )
        try:
            if found.override:
                await exchanger.deliver_direct(self._settings, found.exchangers[0], mail)
            else:  # a relay and Mailjet deliver to the exchanger themselves
                provider, account = self._accounts.platform()
                await provider.send(account, mail)
        except MailError as err:
            detail = f"The check message could not be sent to {address}: {err}"
            await asyncio.to_thread(self._disarm, input.connection_id, token, detail)
            return Step(REDIRECT, StepStatus.WARNING, detail)
        waiting = round_trip.waiting_detail(address, subject.hosted, _minutes(input), via)
        if verified:
            waiting = f"Verified by an earlier test; checking again. {waiting}"
        return Step(REDIRECT, StepStatus.WAITING, waiting)

    async def _domain_record_leg(
        self, input: TestInput | RedirectInput, subject: _Subject, exchanger: str
    ) -> Step:
        """The domain's MX is this platform's receiver: mail for it arrives here whoever sends
        it, so the proof is a DNS record whose value is bound to the company."""
        address = subject.account.address
        domain = address.rpartition("@")[2].lower()
        name = f"{ownership.MX_TXT_NAME}.{domain}"
        company_id = uuid.UUID(subject.company_id)
        accepted = [
            ownership.mx_verification(key, company_id, domain)
            for key in self._accounts.box.signing_keys()
        ]
        expected = accepted[0]
        try:
            published = await asyncio.to_thread(self._settings.resolver().txt, name)
        except DnsUnavailable:
            published = []
        if not set(accepted) & {value.strip() for value in published}:
            detail = ownership.mx_instructions(address, name, expected, exchanger)
            await asyncio.to_thread(self._record_redirect, input.connection_id, False, detail)
            return Step(REDIRECT, StepStatus.WARNING, detail)
        proven = await asyncio.to_thread(self._record_redirect, input.connection_id, True, "")
        status = StepStatus.OK if proven else StepStatus.FAILED
        return Step(REDIRECT, status, proven or round_trip.held_detail(address))

    def _record_redirect(self, connection_id: str, published: bool, detail: str) -> str:
        with session_scope(self._engine) as session:
            connection = get_or_fail(session, Connection, connection_id)
            return ownership.record_domain_proof(session, connection, published, detail)

    def _arm(
        self,
        input: TestInput | RedirectInput,
        token_hash: str,
        hosted: str,
        via: str,
        exchanger_host: str | None,
    ) -> bool:
        """Expect this token back, in this run; True when the redirect was verified by an
        earlier test (that proof stands while the new message travels)."""
        with session_scope(self._engine) as session:
            connection = get_or_fail(session, Connection, input.connection_id)
            connection.check_token_hash = token_hash
            connection.check_sent_at = utcnow()
            connection.check_exchanger = exchanger_host
            connection.check_workflow_id = activity.info().workflow_id
            verified = connection.redirect_status == RedirectStatus.VERIFIED
            if not verified:
                connection.redirect_status = RedirectStatus.WAITING
                connection.redirect_checked_at = None
                connection.redirect_detail = round_trip.waiting_detail(
                    connection.custom_address, hosted, _minutes(input), via
                )
            session.add(connection)
            return verified

    def _disarm(self, connection_id: str, token: str, detail: str) -> None:
        with session_scope(self._engine) as session:
            connection = get_or_fail(session, Connection, connection_id)
            if connection.check_token_hash != round_trip.token_hash(token):
                return
            connection.check_token_hash = None
            session.add(connection)
        self._not_checked(connection_id, detail)

    def _not_checked(self, connection_id: str, detail: str) -> None:
        """No check message is on its way: say why (an earlier proof still stands)."""
        with session_scope(self._engine) as session:
            connection = get_or_fail(session, Connection, connection_id)
            if connection.redirect_status != RedirectStatus.VERIFIED:
                connection.redirect_status = RedirectStatus.NOT_CHECKED
                connection.redirect_checked_at = None
                connection.redirect_detail = detail
            session.add(connection)

    # -- re-checks of a live connection's redirect ----------------------------------------

    @activity.defn(name=CHECK_REDIRECT)
    async def check_redirect(self, input: RedirectInput) -> RedirectOutcome:
        """The redirect leg again, without the send leg and without touching the connection's
        status: sending goes on whatever the answer. Waiting: the run waits for the check
        message; otherwise the outcome is recorded already (no MX, the domain's record)."""
        subject = await asyncio.to_thread(self._load, input.connection_id)
        if subject.refusal:
            return await asyncio.to_thread(
                self._recheck_failed, input.connection_id, subject.refusal
            )
        step = await self._redirect_leg(input, subject)
        if step.status == StepStatus.WAITING:
            return RedirectOutcome(waiting=True)
        if step.status == StepStatus.OK:
            await asyncio.to_thread(self._recheck_passed, input.connection_id)
            return RedirectOutcome()
        return await asyncio.to_thread(self._recheck_failed, input.connection_id, step.detail)

    def _recheck_passed(self, connection_id: str) -> None:
        with session_scope(self._engine) as session:
            inbound_paths.redirect_working(session, get_or_fail(session, Connection, connection_id))

    def _recheck_failed(self, connection_id: str, detail: str) -> RedirectOutcome:
        """No check message could go (no mail exchanger, the domain's record is gone): the
        redirect is not seen, with that reason."""
        with session_scope(self._engine) as session:
            connection = get_or_fail(session, Connection, connection_id)
            return _not_seen(session, connection, detail, keep_blocked=True)

    @activity.defn(name=FIND_REDIRECTS_TO_RECHECK)
    def find_redirects_to_recheck(self, input: RecheckPage) -> RecheckBatch:
        """Live connections with the redirect path on, in id order after `input.after`."""
        with Session(self._engine) as session:
            query = (
                select(Connection.id, Connection.company_id, Connection.inbound_paths)
                .where(col(Connection.status).in_(LIVE_STATUSES))
                .order_by(col(Connection.id))
            )
            if input.after:
                query = query.where(col(Connection.id) > uuid.UUID(input.after))
            if input.company_id:
                query = query.where(Connection.company_id == uuid.UUID(input.company_id))
            rows = session.exec(query.limit(input.limit + 1)).all()
        checks = [
            RecheckInput(str(id), str(company), input.redirect_wait)
            for id, company, paths in rows[: input.limit]
            if InboundPath.REDIRECT in (paths or [])
        ]
        more = len(rows) > input.limit
        after = str(rows[input.limit - 1][0]) if more else ""
        return RecheckBatch(checks, more, after)

    @activity.defn(name=RECORD_REDIRECT_NOT_SEEN)
    def record_redirect_not_seen(self, input: RedirectInput) -> RedirectOutcome | None:
        """The wait ran out: unless the message came back (or bounced) meanwhile, or a newer
        check took over, the redirect does not work: say what to set up, for the mail system
        the address's MX names. A re-check of a redirect verified before ends here too."""
        with session_scope(self._engine) as session:
            connection = get_or_fail(session, Connection, input.connection_id)
            waiting = activity.info().workflow_id
            if connection.check_token_hash is None or connection.check_workflow_id != waiting:
                return None  # it came back, bounced, or another run's check took over
            company = get_or_fail(session, Company, connection.company_id)
            detail = round_trip.redirect_instructions(
                connection.custom_address,
                self._settings.hosted_address(company.slug),
                _minutes(input),
                connection.check_exchanger or "",
            )
            connection.check_token_hash = None
            return _not_seen(session, connection, detail)

    @activity.defn(name=TELL_ADMINS_INBOUND_FAILING)
    async def tell_admins_inbound_failing(self, input: ConnectionRef) -> None:
        mails = await asyncio.to_thread(self._inbound_notices, input.connection_id)
        await send_platform_mail(self._accounts, mails)

    def _inbound_notices(self, connection_id: str) -> list[Outgoing]:
        """What the admins read: each failing path of a live connection, with its reason."""
        with Session(self._engine) as session:
            connection = get_or_fail(session, Connection, connection_id)
            if connection.status not in LIVE_STATUSES:
                return []
            company = get_or_fail(session, Company, connection.company_id)
            sync = session.get(MailboxSync, connection.id)
            failing = [
                (path, status.reason or "")
                for path, status in inbound_paths.statuses(connection, sync).items()
                if status.state == PathState.FAILING
            ]
            hosted = self._settings.hosted_address(company.slug)
            return [
                Outgoing.of(
                    inbound_path_notice(
                        company=company.name,
                        hosted=hosted,
                        domain=self._settings.platform_mail_domain,
                        recipient=admin.email,
                        recipient_name=admin.name,
                        address=connection.custom_address,
                        path=path,
                        reason=reason,
                        now=utcnow(),
                    ),
                    f"inbound-path-{connection.id}",
                    str(company.id),
                )
                for path, reason in failing
                for admin in company_admins(session, company.id)
            ]

    # -- states and activation ----------------------------------------------------------------

    @activity.defn(name=SET_CONNECTION_STATUS)
    def set_connection_status(self, input: StatusInput) -> None:
        with session_scope(self._engine) as session:
            connection = get_or_fail(session, Connection, input.connection_id)
            connection.setup_state = input.status
            connection.updated_at = utcnow()
            if input.status != ConnectionStatus.AWAITING_ADMIN_CONSENT:
                connection.admin_consent_url = None
                connection.admin_instructions = None
            if input.status not in _WAITING_FOR_BROWSER:
                # No sign-in link or state stays usable once the setup has moved on.
                connection.oauth_state_nonce = None
                connection.authorization_url = None
            if input.status in _ENDED:
                connection.oauth_flow_blob = None
                connection.oauth_callback_blob = None
                if connection.redirect_status == RedirectStatus.WAITING:
                    connection.redirect_status = RedirectStatus.NOT_CHECKED
                    connection.redirect_detail = "The setup ended before the message came back."
            session.add(connection)
            if connection.status in LIVE_STATUSES:
                return  # a live connection is only changed by use-platform, delete or activate
            if connection.status == ConnectionStatus.CANCELLED and connection.last_error:
                return  # cancelled by another activation: keep saying why
            before = connection.status
            connection.status = input.status
            # Every transition replaces the reason: none stays that no longer holds.
            connection.last_error = input.error
            if connection.status in ownership.LET_GO:
                ownership.release(session, connection)
            events.connection_changed(session, connection, before, input.error)

    @activity.defn(name=ACTIVATE_CONNECTION)
    def activate_connection(self, input: ActivateInput) -> ActivationResult:
        """Make this the scope's sender in one transaction: the live connection it replaces is
        disabled, and every other open setup of the scope is cancelled, so none takes over."""
        with session_scope(self._engine) as session:
            connection = get_or_fail(session, Connection, input.connection_id)
            if connection.status == ConnectionStatus.ACTIVE:
                return ActivationResult()  # a retried activation
            if connection.status == ConnectionStatus.CANCELLED:
                raise ApplicationError(
                    connection.last_error or "This setup was cancelled; create a new connection.",
                    type="SetupCancelled",
                    non_retryable=True,
                )
            refusal = ownership.refusal(session, self._settings, connection)
            if refusal:
                raise ApplicationError(refusal, type="AddressNotAvailable", non_retryable=True)
            others = session.exec(
                select(Connection).where(
                    Connection.company_id == connection.company_id,
                    col(Connection.legal_entity_id) == connection.legal_entity_id
                    if connection.legal_entity_id
                    else col(Connection.legal_entity_id).is_(None),
                    col(Connection.status).in_([*LIVE_STATUSES, *SETUP_STATUSES]),
                    Connection.id != connection.id,
                )
            ).all()
            now = utcnow()
            user_id = uuid.UUID(input.user_id)
            replaced, cancelled = [], []
            why = (
                f"Cancelled: the {connection.kind} connection for {connection.custom_address} "
                "was activated for this scope. Create a new connection to change it again."
            )
            for other in others:
                before = other.status
                if other.status in LIVE_STATUSES:
                    other.status = ConnectionStatus.DISABLED
                    replaced.append(other)
                    action = "connection.disable"
                else:
                    other.status = ConnectionStatus.CANCELLED
                    other.setup_state = ConnectionStatus.CANCELLED
                    other.last_error = why
                    cancelled.append(other)
                    action = "connection.cancel"
                other.updated_at = now
                session.add(other)
                ownership.release(session, other)
                events.connection_changed(
                    session, other, before, f"replaced by connection {connection.id}"
                )
                record_connection(
                    session,
                    other,
                    user_id,
                    action,
                    status={"before": before, "after": other.status},
                    replaced_by=str(connection.id),
                )
            before = connection.status
            connection.status = ConnectionStatus.ACTIVE
            connection.setup_state = ConnectionStatus.ACTIVE
            connection.activated_at = now
            events.connection_changed(session, connection, before, "activated")
            connection.updated_at = now
            connection.last_error = None
            session.add(connection)
            record_connection(
                session,
                connection,
                user_id,
                "connection.activate",
                kind=connection.kind,
                legal_entity_id=str(connection.legal_entity_id or ""),
                disabled=[str(o.id) for o in replaced],
                cancelled=[str(o.id) for o in cancelled],
            )
            return ActivationResult(cancelled=[str(o.id) for o in cancelled])

    @property
    def all(self) -> list:
        return [
            self.test_connection,
            self.record_redirect_not_seen,
            self.tell_admins_inbound_failing,
            self.check_redirect,
            self.find_redirects_to_recheck,
            self.set_connection_status,
            self.activate_connection,
        ]
