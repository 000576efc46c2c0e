"""The one interface every mail provider implements, as django-anymail has one backend.

A provider is a class with a `kind` (its registry key), a `label` for people, a throttle, a
way to open a sending session, and the steps of a connection test. OAuth providers add the
authorization URL, the code exchange, the token refresh and what a consent refusal means.

Providers are only used inside activities: secrets arrive decrypted in an `Account` and leave
only through `Account.save_secret`, which writes them encrypted.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar

from core.connections.rules import listed_as_own
from core.errors import ConfigurationError, MailError
from core.inbound_paths import paths
from core.mail import Base64Lines, Composed, around_files, part_head, part_size
from core.settings import Settings
from core.throttle import Rate
from providers.http import HttpClients

if TYPE_CHECKING:
    from providers.mailbox import MailboxReader

Secret = dict[str, Any]


@dataclass(frozen=True)
class SmtpServer:
    """Where an SMTP connection sends: the non-secret half of its settings."""

    host: str
    port: int
    security: str  # starttls, tls, none (see providers.smtp.SmtpSecurity)
    username: str | None = None
    verify_certificate: bool = True


def too_large(size: int, limit: int, who: str, how: str = "") -> str:
    """'This message is 12.0 MB; … accepts up to 10.0 MB.' in decimal megabytes, as mail
    clients show sizes."""
    return (
        f"This message is {size / 1_000_000:.1f} MB; {who} accepts up to "
        f"{limit / 1_000_000:.1f} MB{how}. Send smaller files, or link to them in the text."
    )


@dataclass
class Account:
    """The mailbox a provider sends as, with its credentials decrypted in memory."""

    address: str
    secret: Secret = field(default_factory=dict)
    server: SmtpServer | None = None  # SMTP connections only
    # Called with every credential the provider renews (Microsoft rotates refresh tokens).
    save_secret: Callable[[Secret], None] | None = None
    connection_id: str | None = None
    mailbox: str = ""  # OAuth: the mailbox that signed in, when it is not the address itself
    scopes: tuple[str, ...] = ()  # OAuth: the permissions the stored grant carries
    # Microsoft: send with Recruitmail's application permission Mail.Send (the tenant's admin
    # scoped it to this mailbox) instead of the signed-in user's grant.
    application: bool = False
    # Holds one of the mailbox's few concurrent requests while a send talks to its API (Graph:
    # four, across processes: core/send/lease.py); None where the API sets no such limit.
    gate: Callable[[], AbstractAsyncContextManager[None]] | None = None

    def renewed(self, secret: Secret) -> None:
        self.secret = secret
        if self.save_secret is not None:
            self.save_secret(secret)


@dataclass(frozen=True)
class Step:
    """One checked step of a connection test, as the admin sees it."""

    name: str
    status: str  # ok, failed, skipped, warning
    detail: str = ""


class StepFailed(Exception):
    """Raised by a verification step; the test stops there, with this reason."""


class Steps:
    """The running record of a connection test."""

    def __init__(self) -> None:
        self.steps: list[Step] = []

    def ok(self, name: str, detail: str = "") -> None:
        self.steps.append(Step(name, "ok", detail))

    def skip(self, name: str, detail: str = "") -> None:
        self.steps.append(Step(name, "skipped", detail))

    def warn(self, name: str, detail: str) -> None:
        """Passed, with a caveat the admin must read."""
        self.steps.append(Step(name, "warning", detail))

    def fail(self, name: str, detail: str) -> StepFailed:
        self.steps.append(Step(name, "failed", detail))
        return StepFailed(detail)


@dataclass(frozen=True)
class Verification:
    ok: bool
    steps: list[Step]
    error: str | None = None


@dataclass(frozen=True)
class OutgoingFile:
    """A file a message carries, still in storage: `read()` gives its bytes a chunk at a time
    (core/attachments.stream)."""

    filename: str
    content_type: str
    size: int
    read: Callable[[], AsyncIterator[bytes]]


@dataclass(frozen=True)
class Outgoing:
    """One composed message: its exact bytes, its envelope, our id for it, and the company it
    is sent for (the dev outbox files it under that company).

    With `files`, `mime` is the message without them (a multipart/mixed under
    `files_boundary`): a provider that sends files from storage (Graph's upload sessions)
    takes them as they are; every other one gets `whole()`, the same bytes every time."""

    mime: bytes
    envelope_from: str
    envelope_to: list[str]
    custom_id: str = ""
    company_id: str = ""
    files: tuple[OutgoingFile, ...] = ()
    files_boundary: str = ""

    @classmethod
    def of(cls, composed: Composed, custom_id: str = "", company_id: str = "") -> Outgoing:
        return cls(
            composed.mime, composed.envelope_from, composed.envelope_to, custom_id, company_id
        )

    @property
    def size(self) -> int:
        """The whole message's size in bytes, its files included, without reading them."""
        boundary = self.files_boundary
        return len(self.mime) + sum(
            part_size(boundary, f.filename, f.content_type, f.size) for f in self.files
        )

    async def whole(self) -> Outgoing:
        """The message with its files in it, read from storage a chunk at a time."""
        if not self.files:
            return self
        before, after = around_files(self.mime, self.files_boundary)
        pieces: list[bytes | memoryview] = [before]
        for file in self.files:
            pieces.append(part_head(self.files_boundary, file.filename, file.content_type))
            lines = Base64Lines()
            async for chunk in file.read():
                pieces.append(lines.feed(chunk))
            pieces.append(lines.end())
        pieces.append(after)
        return replace(self, mime=b"".join(pieces), files=(), files_boundary="")


class MailSession(ABC):
    """Sends messages through one account. A batch reuses one session (one SMTP connection,
    one refreshed OAuth token); a single send opens one and closes it."""

    @abstractmethod
    async def send(self, mail: Outgoing) -> str:
        """Send; return the provider's id or final answer. Raises a MailError."""

    async def close(self) -> None:  # noqa: B027 - most sessions hold nothing to close
        """Release what the session holds."""


class MailProvider(ABC):
    """A way to send mail. Subclasses set `kind` and `label` and implement `session`."""

    kind: ClassVar[str]
    label: ClassVar[str]
    # True for the platform's own transports (chosen by RECRUITMAIL_PLATFORM_TRANSPORT),
    # False for the kinds a company connects its own address with.
    platform: ClassVar[bool] = False

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @abstractmethod
    def session(self, account: Account) -> MailSession:
        """A session sending as `account`."""

    def rate(self) -> Rate:
        """How fast one mailbox may send in bulk; unlimited unless the provider says so."""
        return Rate(interval=0.0)

    def platform_account(self) -> Account:
        """The account the platform sends hosted mail through (platform providers only)."""
        raise ConfigurationError(f"{self.label} is not a platform transport.")

    async def verify(self, account: Account) -> Verification:
        """Walk the connection test step by step. Providers override this."""
        return Verification(ok=True, steps=[])

    def takes_files(self, account: Account) -> bool:
        """Whether this provider sends a message's files from storage as they are (Outgoing
        with `files`); otherwise the caller gives it `await mail.whole()`."""
        return False

    async def send(self, account: Account, mail: Outgoing) -> str:
        session = self.session(account)
        try:
            return await session.send(mail)
        finally:
            await session.close()

    def needs_attention(self, address: str) -> str:
        """What an admin must do when the credentials are refused at send time."""
        return "An admin must reconnect the mailbox (Reconnect in the mail settings)."

    def explain_send_failure(self, err: MailError, address: str, mailbox: str = "") -> str:
        """A connection test's message was refused: what the admin can do about it. `mailbox`
        is the signed-in mailbox (OAuth), when it differs from the address."""
        return str(err)

    def setup_steps(self) -> set[str]:
        """Names of steps a setup recorded before any test, which a new test keeps."""
        return set()


@dataclass(frozen=True)
class Identity:
    """Who signed in, as the identity provider tells it: the mailbox, and the other addresses
    it says that mailbox owns or may send as (proxy addresses, verified send-as aliases)."""

    mailbox: str
    aliases: tuple[str, ...] = ()

    def vouches_for(self, address: str) -> bool:
        wanted = address.strip().lower()
        return wanted == self.mailbox.lower() or wanted in {a.lower() for a in self.aliases}


@dataclass(frozen=True)
class Grant:
    """What a completed sign-in leaves: the secret to store encrypted, and who signed in."""

    secret: Secret
    identity: Identity
    # The scopes the provider granted (short names: "Mail.Send", "…/gmail.readonly").
    scopes: tuple[str, ...] = ()

    @property
    def mailbox(self) -> str:
        return self.identity.mailbox


@dataclass(frozen=True)
class AdminConsentHelp:
    """What the person connecting forwards to an administrator while consent is missing."""

    admin_consent_url: str | None = None  # a link an admin opens (Microsoft)
    admin_instructions: str | None = None  # steps in an admin console (Google)


class OAuthProvider(MailProvider):
    """A mailbox connected by signing in: authorization-code flow with PKCE, refresh tokens.
    Its HTTP clients (the identity provider's library, the mail API) are pooled."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.http = HttpClients(settings, settings.oauth_http_timeout_seconds)

    # Whether an administrator's consent comes back to us through a link with a new state
    # (Microsoft's admin-consent endpoint). Otherwise an admin says it was granted.
    consent_link: ClassVar[bool] = False

    # The permission that reads the mailbox (mailbox sync asks for it on top of sending).
    read_scope: ClassVar[str] = ""

    @abstractmethod
    def authorization_url(
        self, state: str, login_hint: str, read: bool = False, write: bool = False
    ) -> tuple[str, Secret]:
        """The sign-in URL, and the flow data (PKCE verifier) to keep encrypted; `read` asks
        for the read permission too (only the new one is asked of a user who granted the
        rest); `write`, for what large files need where the provider needs more (Graph)."""

    @abstractmethod
    def exchange_code(self, flow: Secret, query: dict[str, str]) -> Grant:
        """Redeem the callback. Raises AdminConsentRequiredError when an admin must approve."""

    @abstractmethod
    def refresh(self, secret: Secret, read: bool = False) -> tuple[str, Secret | None]:
        """A fresh access token (for reading the mailbox with `read`); the renewed secret too
        when it changed (save it)."""

    @abstractmethod
    def admin_consent_help(
        self, connection_id: str, address: str, state: str, read: bool = False, write: bool = False
    ) -> AdminConsentHelp:
        """What to show while an administrator's consent is missing."""

    def reads(self, granted: list[str]) -> bool:
        """Whether these granted scopes include reading the mailbox."""
        return paths.reads(self.kind, granted)

    def reader(self, user: str | None = None, delegate: str = "") -> MailboxReader:
        """The mailbox's reader (providers/mailbox.py); `user`: that mailbox, as an
        application or (with `delegate`, who signed in) a shared mailbox (Microsoft only)."""
        raise NotImplementedError

    # Whether an administrator may grant reading as an application instead of the user's
    # delegated grant (Microsoft: the application permission Mail.Read, scoped to the mailbox
    # with Exchange's RBAC for Applications).
    application_read: ClassVar[bool] = False

    def application_token(self, secret: Secret) -> str:
        """A token of the application itself, for the signed-in mailbox's tenant."""
        raise NotImplementedError

    @abstractmethod
    async def post_mime(
        self,
        access_token: str,
        address: str,
        mime: bytes,
        mailbox: str = "",
        scopes: tuple[str, ...] = (),
    ) -> str:
        """Send raw MIME through the provider's mail API as `address`; return its id.
        `mailbox` is the signed-in mailbox when it is another one (Send As rights); `scopes`,
        what the stored grant carries."""

    async def post_mime_as_application(self, access_token: str, address: str, mime: bytes) -> str:
        """Send raw MIME as `address` with the application's own token (Microsoft only)."""
        raise ConfigurationError(f"{self.label} cannot send with an application permission.")

    async def post_with_files(
        self, access_token: str, address: str, mail: Outgoing, mailbox: str, scopes: tuple[str, ...]
    ) -> str:
        """Send a message whose files are still in storage (takes_files; Microsoft only)."""
        raise ConfigurationError(f"{self.label} does not send files from storage.")

    # Requests at once the mail API takes against one mailbox (0: no such limit).
    concurrent_per_mailbox: ClassVar[int] = 0

    # When the identity provider does not list the address for the signed-in mailbox, may a
    # successful send as the address (the send leg) prove the right to it? (Graph: only a
    # mailbox with Send As rights can send as another address.)
    send_as_proven_by_sending: ClassVar[bool] = False

    def identity(self, access_token: str, address: str) -> Identity:
        """Who signed in, and the addresses the identity provider vouches for; `address` is the
        one the connection needs ("" mailbox when the granted scopes cannot read it)."""
        return Identity("")

    def mailbox_refusal(self, identity: Identity, address: str) -> str | None:
        """Why this sign-in cannot send as `address`, in one sentence naming both addresses;
        None when the identity provider vouches for it (or the send leg may still prove it)."""
        if identity.vouches_for(address) or self.send_as_proven_by_sending:
            return None
        return (
            f"You signed in as {identity.mailbox}, but the custom address is {address}, and "
            f"{self.label} does not list {address} as that mailbox's own address or a verified "
            f"send-as alias of it. Sign in with the {address} account itself."
        )

    def sign_in_steps(self, identity: Identity, address: str) -> list[Step]:
        """What a completed sign-in proved; kept beside every later test's steps."""
        mailbox = identity.mailbox
        if mailbox and mailbox.lower() != address.lower():
            if identity.vouches_for(address):
                mailbox += f" ({self.label} {listed_as_own(address)})"
            else:
                mailbox += f" (whether it may send as {address} is checked by the test message)"
        return [
            Step(f"{self.label} sign-in", "ok"),
            Step("Signed-in mailbox", "ok", mailbox),
            Step("Send permission", "ok", "granted"),
        ]

    def setup_steps(self) -> set[str]:
        return {step.name for step in self.sign_in_steps(Identity(""), "")}

    async def verify(self, account: Account) -> Verification:
        """Refresh the grant (saving any renewed token); the identity provider must still
        vouch for the address."""
        steps = Steps()
        try:
            token, renewed = await asyncio.to_thread(self.refresh, account.secret)
            steps.ok("Token refresh")
            if renewed:
                await asyncio.to_thread(account.renewed, renewed)
            identity = await asyncio.to_thread(self.identity, token, account.address)
        except MailError as err:
            steps.fail("Token refresh", str(err))
            return Verification(ok=False, steps=steps.steps, error=str(err))
        refusal = self.mailbox_refusal(identity, account.address) if identity.mailbox else None
        if refusal:
            steps.fail("Mailbox", refusal)
            return Verification(ok=False, steps=steps.steps, error=refusal)
        steps.ok("Mailbox", identity.mailbox or account.address)
        return Verification(ok=True, steps=steps.steps)

    def session(self, account: Account) -> MailSession:
        return _TokenSession(self, account)


class _TokenSession(MailSession):
    """Refreshes the token once for the whole session (a bulk batch), then posts each MIME."""

    def __init__(self, provider: OAuthProvider, account: Account) -> None:
        self._provider = provider
        self._account = account
        self._token: str | None = None

    async def send(self, mail: Outgoing) -> str:
        account = self._account
        if self._token is None:
            if account.application:  # the application's own token: no user's grant needed
                self._token = await asyncio.to_thread(
                    self._provider.application_token, account.secret
                )
            else:
                token, renewed = await asyncio.to_thread(self._provider.refresh, account.secret)
                if renewed:
                    await asyncio.to_thread(account.renewed, renewed)
                self._token = token
        if account.gate is None:
            return await self._post(self._token, mail)
        async with account.gate():
            return await self._post(self._token, mail)

    async def _post(self, token: str, mail: Outgoing) -> str:
        account = self._account
        if mail.files:
            if self._provider.takes_files(account):
                return await self._provider.post_with_files(
                    token, account.address, mail, account.mailbox, account.scopes
                )
            mail = await mail.whole()
        if account.application:
            return await self._provider.post_mime_as_application(token, account.address, mail.mime)
        return await self._provider.post_mime(
            token, account.address, mail.mime, account.mailbox, account.scopes
        )


__all__ = [
    "Account",
    "AdminConsentHelp",
    "Grant",
    "Identity",
    "MailError",
    "MailProvider",
    "MailSession",
    "OAuthProvider",
    "Outgoing",
    "Secret",
    "SmtpServer",
    "Step",
    "StepFailed",
    "Steps",
    "Verification",
]
