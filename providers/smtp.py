"""SMTP: a company's own mailbox connected with host, port and password, and the SMTP
machinery the platform relay and the dev outbox share (aiosmtplib, error classification)."""

from __future__ import annotations

import errno
import logging
import re
import socket
import ssl
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

import aiosmtplib

from core import netguard
from core.errors import (
    AuthExpiredError,
    ConfigurationError,
    MailError,
    PermanentMailError,
    QuotaExceeded,
    RecipientDeferred,
    RecipientRefused,
    TransientMailError,
)
from core.throttle import Rate, rate_of
from core.tls import client_tls_context
from providers import refusals
from providers.base import (
    Account,
    MailProvider,
    MailSession,
    Outgoing,
    StepFailed,
    Steps,
    Verification,
    too_large,
)

log = logging.getLogger(__name__)


class SmtpSecurity(StrEnum):
    STARTTLS = "starttls"  # plain connect, then STARTTLS (required)
    TLS = "tls"  # implicit TLS from the first byte (port 465)
    NONE = "none"  # only where an operator allows it
    OPPORTUNISTIC = "opportunistic"  # STARTTLS when offered; for local relays and sinks


@dataclass(frozen=True)
class SmtpTarget:
    host: str
    port: int
    security: SmtpSecurity
    username: str | None = None
    password: str | None = None
    verify_certificate: bool = True
    # A company's own server: it must resolve to public addresses only (core/netguard.py).
    public_only: bool = False
    # The name we give in EHLO (RECRUITMAIL_SMTP_HELO_NAME): a real one, never "localhost",
    # which receivers with reject_non_fqdn_helo_hostname refuse and spam filters score.
    helo: str = ""

    @property
    def label(self) -> str:
        return f"{self.host}:{self.port}"


async def _open_client(
    target: SmtpTarget, tls_context: ssl.SSLContext, timeout: float
) -> aiosmtplib.SMTP:
    """A client on a TCP connection to an address checked by the network guard (the name is
    resolved once; TLS still verifies the certificate against the name)."""
    sock = await netguard.open_socket(
        target.host, target.port, timeout, allow_private=not target.public_only
    )
    return _client(target, tls_context, timeout, sock)


def _client(
    target: SmtpTarget,
    tls_context: ssl.SSLContext,
    timeout: float,
    sock: socket.socket,
    *,
    step_by_step: bool = False,
) -> aiosmtplib.SMTP:
    """`step_by_step`: no automatic STARTTLS; the connection test issues it itself."""
    start_tls: bool | None = {
        SmtpSecurity.STARTTLS: True,
        SmtpSecurity.TLS: False,
        SmtpSecurity.NONE: False,
        SmtpSecurity.OPPORTUNISTIC: None,
    }[target.security]
    if step_by_step:
        start_tls = False
    return aiosmtplib.SMTP(
        hostname=target.host,
        local_hostname=target.helo or None,
        sock=sock,
        use_tls=target.security is SmtpSecurity.TLS,
        start_tls=start_tls,
        validate_certs=target.verify_certificate,
        tls_context=tls_context if target.security is not SmtpSecurity.NONE else None,
        timeout=timeout,
    )


async def send_over_smtp(
    target: SmtpTarget, mail: Outgoing, *, tls_context: ssl.SSLContext, timeout: float
) -> str:
    """Send one message on a fresh connection; return the server's final answer."""
    try:
        client = await _open_client(target, tls_context, timeout)
        async with client:
            if target.username:
                await sign_in(client, target.username, target.password or "")
            await refuse_oversize(client, mail, target.label)
            refused, answer = await client.sendmail(mail.envelope_from, mail.envelope_to, mail.mime)
    except MailError:
        raise
    except Exception as exc:  # every aiosmtplib and socket failure is classified below
        raise classify_smtp_error(exc, target.label) from exc
    if refused:
        # One recipient of several refused comes back here, not as an exception.
        address, (code, text) = next(iter(refused.items()))
        raise classify_smtp_error(
            aiosmtplib.SMTPRecipientRefused(code, text, address), target.label
        )
    return answer


async def refuse_oversize(client: aiosmtplib.SMTP, mail: Outgoing, label: str) -> None:
    """A message over the SIZE the server announced (RFC 1870) fails here, before MAIL FROM,
    with the server's limit in the reason: every retry would be refused the same way."""
    if client.is_ehlo_or_helo_needed:
        await client.ehlo()
    announced = (client.esmtp_extensions.get("size") or "").strip()
    limit = int(announced) if announced.isdigit() else 0
    if limit and len(mail.mime) > limit:
        raise PermanentMailError(too_large(len(mail.mime), limit, f"the mail server {label}"))


async def sign_in(client: aiosmtplib.SMTP, username: str, password: str) -> None:
    """AUTH with one mechanism, the best the server offers of PLAIN, LOGIN and CRAM-MD5: a wrong
    password is one failed login, not one per mechanism (aiosmtplib's `login` tries them all,
    and servers count each against the account)."""
    if client.is_ehlo_or_helo_needed:
        await client.ehlo()
    if not client.supports_extension("auth"):
        await client.login(username, password)  # raises its own "AUTH not supported" error
        return
    offered = {method.lower() for method in client.server_auth_methods}
    for method in ("plain", "login", "cram-md5"):
        if method in offered:
            await getattr(client, f"auth_{method.replace('-', '')}")(username, password)
            return
    await client.login(username, password)


class SmtpSession(MailSession):
    """One authenticated SMTP connection reused for many messages (bulk sends).

    Reconnects when the server drops the connection or answers 421 (closing), and sends that
    message again: it was not accepted, so this cannot double it.
    """

    def __init__(self, target: SmtpTarget, tls_context: ssl.SSLContext, timeout: float) -> None:
        self.target = target
        self.tls_context = tls_context
        self.timeout = timeout
        self.client: aiosmtplib.SMTP | None = None
        self.connects = 0

    async def _connect(self) -> aiosmtplib.SMTP:
        client = await _open_client(self.target, self.tls_context, self.timeout)
        await client.connect()
        if self.target.username:
            await sign_in(client, self.target.username, self.target.password or "")
        self.connects += 1
        return client

    async def send(self, mail: Outgoing) -> str:
        last: BaseException | None = None
        for _ in range(3):
            try:
                if self.client is None or not self.client.is_connected:
                    self.client = await self._connect()
                await refuse_oversize(self.client, mail, self.target.label)
                refused, answer = await self.client.sendmail(
                    mail.envelope_from, mail.envelope_to, mail.mime
                )
            except MailError:
                raise  # this message is too large; the session goes on
            except (aiosmtplib.SMTPServerDisconnected, ConnectionError) as exc:
                last = exc
                await self._drop()
                continue
            except aiosmtplib.SMTPRecipientsRefused as exc:
                # This message's recipient was refused; the session goes on (after RSET).
                await self._reset()
                raise classify_smtp_error(exc, self.target.label) from exc
            except aiosmtplib.SMTPResponseException as exc:
                if exc.code == 421:  # the server is closing this session: reconnect
                    last = exc
                    await self._drop()
                    continue
                await self._reset()
                raise classify_smtp_error(exc, self.target.label) from exc
            except Exception as exc:
                await self._drop()
                raise classify_smtp_error(exc, self.target.label) from exc
            if refused:
                address, (code, text) = next(iter(refused.items()))
                raise classify_smtp_error(
                    aiosmtplib.SMTPRecipientRefused(code, text, address), self.target.label
                )
            return answer
        raise classify_smtp_error(last or TimeoutError(), self.target.label)

    async def _reset(self) -> None:
        """After a refused message the session may be mid-transaction: RSET, or reconnect."""
        try:
            if self.client is not None and self.client.is_connected:
                await self.client.rset()
        except Exception:
            await self._drop()

    async def _drop(self) -> None:
        if self.client is not None:
            self.client.close()
        self.client = None

    async def close(self) -> None:
        if self.client is not None and self.client.is_connected:
            try:
                await self.client.quit()
            except Exception:
                self.client.close()
        self.client = None


def _server_said(code: int, text: str) -> str:
    text = " ".join(str(text).split())
    return f"{code} {text}".strip()


def connect_failure(server: str) -> str:
    """One answer for a refused connection and a timeout alike: which of the two it was would
    tell an outsider which ports are open. The log keeps the detail."""
    return (
        f"Could not connect to {server}. Check the host name and the port, and that the server "
        "accepts connections from the internet."
    )


_NETWORK_FAILURES = {
    errno.ECONNREFUSED: "the connection was refused (nothing listens on that port)",
    errno.ECONNRESET: "the connection was reset by the server",
    errno.ETIMEDOUT: "the connection timed out",
    errno.EHOSTUNREACH: "the host cannot be reached",
    errno.ENETUNREACH: "the network cannot be reached",
    errno.ECONNABORTED: "the connection was aborted",
    errno.EPIPE: "the server closed the connection",
}


def network_failure(exc: OSError) -> str:
    """An OS error in words, without its "[Errno 111]" (the log keeps the number)."""
    if exc.errno in _NETWORK_FAILURES:
        return _NETWORK_FAILURES[exc.errno]
    return (exc.strerror or str(exc) or type(exc).__name__).strip().rstrip(".").lower()


# The sender's quota or rate, not the recipient's mailbox: Gmail's "550 5.4.5 Daily user
# sending quota exceeded" (RFC 3463: X.4.5, mail system congestion), Exchange Online's
# "5.2.2 Submission quota exceeded" and "4.x ... message rate limit".
_QUOTA_RE = re.compile(
    r"\b[45]\.4\.5\b|submission quota|sending quota|sending limit|message rate limit|"
    r"recipient rate limit|daily user sending",
    re.IGNORECASE,
)


def _quota_spent(message: str) -> bool:
    return _QUOTA_RE.search(message or "") is not None


def classify_smtp_error(exc: BaseException, server: str) -> MailError:
    """Map an aiosmtplib/socket error to transient, permanent or credential problems."""
    if isinstance(exc, MailError):
        return exc
    if isinstance(exc, netguard.InternalAddress):
        return ConfigurationError(str(exc))
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        said = _server_said(exc.code, exc.message)
        known = refusals.find(said, "microsoft")
        if known is not None:
            return AuthExpiredError(known.explain(said))
        return AuthExpiredError(
            f"The mail server {server} refused the username or password ({said})."
        )
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        first = exc.recipients[0] if exc.recipients else None
        if first is not None:
            return classify_smtp_error(first, server)
    if isinstance(exc, aiosmtplib.SMTPResponseException) and _quota_spent(exc.message):
        said = _server_said(exc.code, exc.message)
        known = refusals.find(said, "google")
        if known is not None and known.answer == "550 5.4.5":
            return QuotaExceeded(f"The mail server {server}: " + known.explain(said))
        return QuotaExceeded(
            f"The sending mailbox's quota at {server} is spent ({said}); the message waits "
            "for it to reopen and goes then."
        )
    if isinstance(exc, aiosmtplib.SMTPRecipientRefused):
        said = _server_said(exc.code, exc.message)
        if 400 <= exc.code < 500:
            return RecipientDeferred(
                f"The receiving server asked to try {exc.recipient} later ({said})."
            )
        return RecipientRefused(f"The recipient address {exc.recipient} was rejected ({said}).")
    if isinstance(exc, aiosmtplib.SMTPConnectError) and isinstance(exc.__cause__, OSError):
        return TransientMailError(
            f"Could not reach the mail server {server}: {network_failure(exc.__cause__)}."
        )
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected | aiosmtplib.SMTPConnectError):
        return TransientMailError(f"Could not reach the mail server {server}: {exc}.")
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | TimeoutError):
        return TransientMailError(f"The mail server {server} did not answer in time.")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        said = _server_said(exc.code, exc.message)
        known = refusals.find(said, "google")
        if known is not None and known.answer in ("550-5.7.26", "421 4.7.0"):
            kind = PermanentMailError if exc.code >= 500 else TransientMailError
            return kind(f"The mail server {server}: " + known.explain(said))
        if isinstance(exc, aiosmtplib.SMTPDataError) and 400 <= exc.code < 500 and exc.code != 421:
            # DATA refused for now (a full mailbox, greylisting after DATA): this message only.
            return RecipientDeferred(
                f"The mail server {server} asked to send this message later ({said})."
            )
        if 400 <= exc.code < 500:
            return TransientMailError(f"The mail server {server} asked us to try later ({said}).")
        return PermanentMailError(f"The mail server {server} refused the message ({said}).")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return ConfigurationError(
            f"The certificate of {server} is not trusted ({exc.verify_message}). "
            "Install a valid certificate, or add its CA with RECRUITMAIL_CA_BUNDLE."
        )
    if isinstance(exc, ssl.SSLError):
        return ConfigurationError(f"The TLS handshake with {server} failed ({exc}).")
    if isinstance(exc, socket.gaierror):
        return ConfigurationError(f"The host name of {server} cannot be resolved.")
    if isinstance(exc, aiosmtplib.SMTPException):
        # e.g. "SMTP AUTH extension not supported by server" when TLS was not offered.
        return ConfigurationError(f"The mail server {server} cannot be used: {exc}.")
    if isinstance(exc, OSError):
        return TransientMailError(
            f"Could not reach the mail server {server}: {network_failure(exc)}."
        )
    return TransientMailError(f"Sending through {server} failed unexpectedly: {exc!r}.")


# -- connection test ------------------------------------------------------------------------

_SEND_AS_DENIED = (
    "The server refused to send as {address} (5.7.60 SendAsDenied): the account that signs in "
    "may not send as this address. Sign in with the mailbox of {address} itself."
)
_MUST_STARTTLS = (
    'The server requires STARTTLS before anything else (530): choose "security": "starttls".'
)


def _smtp_said(exc: aiosmtplib.SMTPResponseException) -> str:
    return _server_said(exc.code, exc.message)


def explain_auth_failure(exc: aiosmtplib.SMTPResponseException, address: str) -> str:
    said = _smtp_said(exc)
    known = refusals.find(said, "microsoft")
    if known is not None and exc.code == 535:
        return known.explain(said, address=address)
    if exc.code == 530:
        return _MUST_STARTTLS
    if exc.code == 535 or isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return (
            f"The server refused the username or password ({said}). Check the password; if the "
            "account uses two-step verification, it may need an app password."
        )
    return f"Signing in failed ({said})."


def explain_tls_failure(exc: BaseException, server: str) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = (exc.verify_message or str(exc)).lower()
        if "hostname" in reason or "ip address mismatch" in reason:
            return (
                f"The certificate of {server} is for another name ({exc.verify_message}). Use "
                "the host name that the certificate names."
            )
        if "expired" in reason:
            return f"The certificate of {server} has expired. Its owner must renew it."
        return (
            f"The certificate of {server} is not trusted ({exc.verify_message}). It must be "
            "issued by a public CA, or its CA added by an operator (RECRUITMAIL_CA_BUNDLE)."
        )
    return f"The TLS handshake with {server} failed ({exc})."


class _Check:
    """One connection test: each SMTP step is a method that records itself or raises."""

    def __init__(
        self, target: SmtpTarget, mail_from: str, tls_context: ssl.SSLContext, timeout: float
    ) -> None:
        self.target = target
        self.mail_from = mail_from
        self.tls_context = tls_context
        self.timeout = timeout
        self.server = target.label
        self.log = Steps()
        self.implicit = target.security is SmtpSecurity.TLS
        self.verified = (
            "certificate verified" if target.verify_certificate else "certificate not verified"
        )

    async def run(self) -> None:
        addresses = await self.dns()
        sock = await self.tcp_connect(addresses)
        client = _client(self.target, self.tls_context, self.timeout, sock, step_by_step=True)
        try:
            await self.greeting(client)
            await self.ehlo(client)
            await self.starttls(client)
            await self.auth(client)
            await self.mail_from_accepted(client)
        except aiosmtplib.SMTPTimeoutError:
            raise self.log.fail("timeout", f"{self.server} stopped answering (timeout).") from None
        except aiosmtplib.SMTPServerDisconnected as exc:
            raise self.log.fail(
                "disconnected", f"{self.server} closed the connection ({exc})."
            ) from None
        finally:
            client.close()  # its transport owns the socket from connect() on, and closes it

    async def dns(self) -> list[str]:
        """Resolved once: the connection goes to these addresses, never to a new answer."""
        try:
            addresses = await netguard.resolve(
                self.target.host,
                self.target.port,
                self.timeout,
                allow_private=not self.target.public_only,
            )
        except netguard.InternalAddress as exc:
            raise self.log.fail("dns", str(exc)) from None
        except (OSError, TimeoutError):
            raise self.log.fail(
                "dns", f"The host name {self.target.host} cannot be resolved. Check the spelling."
            ) from None
        self.log.ok("dns", f"{self.target.host} resolves to {addresses[0]}")
        return addresses

    async def tcp_connect(self, addresses: list[str]) -> socket.socket:
        try:
            sock = await netguard.connect(addresses, self.target.port, self.timeout)
        except (TimeoutError, OSError) as exc:
            log.info("connection test: connecting to %s failed: %r", self.server, exc)
            raise self.log.fail("tcp_connect", connect_failure(self.server)) from None
        self.log.ok("tcp_connect", f"connected to {self.server}")
        return sock

    async def greeting(self, client: aiosmtplib.SMTP) -> None:
        try:
            await client.connect()
        except (ssl.SSLError, ssl.CertificateError) as exc:
            raise self.log.fail("tls_handshake", explain_tls_failure(exc, self.server)) from None
        except aiosmtplib.SMTPException as exc:
            if self.implicit and isinstance(exc.__cause__, ssl.SSLError):
                raise self.log.fail(
                    "tls_handshake", explain_tls_failure(exc.__cause__, self.server)
                ) from None
            raise self.log.fail(
                "greeting",
                f"{self.server} did not greet as an SMTP server ({exc}). "
                + ("Is it an implicit-TLS port? Try port 465." if not self.implicit else ""),
            ) from None
        if self.implicit:
            self.log.ok("tls_handshake", f"implicit TLS, {self.verified}")
            self._certificate_caveat()

    def _certificate_caveat(self) -> None:
        if not self.target.verify_certificate:
            self.log.warn(
                "certificate",
                f"The certificate of {self.server} was NOT verified (verify_certificate is "
                "false): the connection is encrypted, but anyone able to intercept it could "
                "pose as the server and read the password. Use a trusted certificate and turn "
                "verification back on.",
            )

    async def ehlo(self, client: aiosmtplib.SMTP) -> None:
        try:
            await client.ehlo()
        except aiosmtplib.SMTPResponseException as exc:
            raise self.log.fail(
                "ehlo", f"{self.server} refused EHLO ({_smtp_said(exc)})."
            ) from None
        self.log.ok("ehlo")

    async def starttls(self, client: aiosmtplib.SMTP) -> None:
        if self.target.security is SmtpSecurity.NONE:
            self.log.skip("tls_handshake", "security is none (allowed by the operator)")
            return
        if self.target.security is not SmtpSecurity.STARTTLS:
            return
        if not client.supports_extension("starttls"):
            raise self.log.fail(
                "starttls_offered",
                f"{self.server} does not offer STARTTLS, so the password cannot be sent safely. "
                'Use its TLS port (465, "security": "tls") or enable STARTTLS.',
            )
        self.log.ok("starttls_offered")
        try:
            await client.starttls()
        except (ssl.SSLError, ssl.CertificateError) as exc:
            raise self.log.fail("tls_handshake", explain_tls_failure(exc, self.server)) from None
        except aiosmtplib.SMTPException as exc:
            cause = exc.__cause__
            if isinstance(cause, ssl.SSLError):
                raise self.log.fail(
                    "tls_handshake", explain_tls_failure(cause, self.server)
                ) from None
            raise self.log.fail("tls_handshake", f"STARTTLS failed ({exc}).") from None
        self.log.ok("tls_handshake", f"STARTTLS, {self.verified}")
        self._certificate_caveat()
        await self.ehlo(client)

    async def auth(self, client: aiosmtplib.SMTP) -> None:
        if not client.supports_extension("auth"):
            encrypted = self.target.security is not SmtpSecurity.NONE
            raise self.log.fail(
                "auth_offered",
                f"{self.server} does not offer AUTH"
                + ("." if encrypted else " without TLS: choose starttls or tls."),
            )
        self.log.ok("auth_offered", ", ".join(sorted(client.server_auth_methods)))
        try:
            await sign_in(client, self.target.username or "", self.target.password or "")
        except aiosmtplib.SMTPResponseException as exc:
            raise self.log.fail("auth", explain_auth_failure(exc, self.mail_from)) from None
        except aiosmtplib.SMTPException as exc:
            raise self.log.fail("auth", f"Signing in failed: {exc}.") from None
        self.log.ok("auth", f"signed in as {self.target.username}")

    async def mail_from_accepted(self, client: aiosmtplib.SMTP) -> None:
        try:
            await client.mail(self.mail_from)
        except aiosmtplib.SMTPResponseException as exc:
            said = _smtp_said(exc)
            if "5.7.60" in said or "sendasdenied" in said.lower().replace(" ", ""):
                raise self.log.fail(
                    "mail_from", _SEND_AS_DENIED.format(address=self.mail_from)
                ) from None
            if exc.code == 530:
                raise self.log.fail("mail_from", _MUST_STARTTLS) from None
            raise self.log.fail(
                "mail_from", f"The server refused {self.mail_from} as the sender ({said})."
            ) from None
        self.log.ok("mail_from", f"{self.mail_from} accepted as sender")
        await client.rset()
        self.log.ok("rset", "nothing was sent")
        try:
            await client.quit()
        except aiosmtplib.SMTPException:
            pass  # some servers drop the line on QUIT; the test already passed


async def verify_smtp(
    target: SmtpTarget, mail_from: str, *, tls_context: ssl.SSLContext, timeout: float
) -> Verification:
    """Walk the connection step by step, recording each; nothing is sent (MAIL FROM, RSET)."""
    check = _Check(target, mail_from, tls_context, timeout)
    try:
        await check.run()
    except StepFailed as failed:
        return Verification(ok=False, steps=check.log.steps, error=str(failed))
    return Verification(ok=True, steps=check.log.steps)


def explain_send_failure(err: MailError, address: str) -> str:
    """A refused test message, in words an admin can act on."""
    said = str(err)
    lowered = said.lower().replace(" ", "")
    if "5.7.60" in said or "sendasdenied" in lowered or "sendas" in lowered:
        return _SEND_AS_DENIED.format(address=address) + f" (after DATA: {said})"
    if "quota" in lowered or "5.4.5" in said or "4.5.3" in said:
        return (
            f"The mail server accepted the sign-in but refused the message: the sending quota of "
            f"{address} is used up. Wait for it to reset, or raise it, then test again. ({said})"
        )
    return said


def target_for(account: Account, *, public_only: bool, helo: str = "") -> SmtpTarget:
    """The account's server settings plus its password, decrypted only for this session."""
    server = account.server
    if server is None:
        raise ConfigurationError(f"No SMTP server is set for {account.address}.")
    return SmtpTarget(
        host=server.host,
        port=server.port,
        security=SmtpSecurity(server.security),
        username=server.username,
        password=account.secret.get("password"),
        verify_certificate=server.verify_certificate,
        public_only=public_only,
        helo=helo,
    )


class SmtpProvider(MailProvider):
    """A company's own mailbox over SMTP with a password (host, port, security, account)."""

    kind: ClassVar[str] = "smtp"
    label: ClassVar[str] = "SMTP"

    def rate(self) -> Rate:
        return rate_of("smtp", self.settings)

    def _tls(self, target: SmtpTarget) -> ssl.SSLContext:
        return client_tls_context(self.settings.ca_bundle, verify=target.verify_certificate)

    def session(self, account: Account) -> MailSession:
        target = target_for(
            account,
            public_only=not self.settings.allow_private_hosts,
            helo=self.settings.helo_name,
        )
        return SmtpSession(target, self._tls(target), self.settings.smtp_timeout_seconds)

    async def send(self, account: Account, mail: Outgoing) -> str:
        # One message, one fresh connection: a drop mid-send fails this attempt, and the
        # workflow's retry decides, so a message is never resent inside one attempt.
        target = target_for(
            account,
            public_only=not self.settings.allow_private_hosts,
            helo=self.settings.helo_name,
        )
        return await send_over_smtp(
            target, mail, tls_context=self._tls(target), timeout=self.settings.smtp_timeout_seconds
        )

    async def verify(self, account: Account) -> Verification:
        target = target_for(
            account,
            public_only=not self.settings.allow_private_hosts,
            helo=self.settings.helo_name,
        )
        return await verify_smtp(
            target,
            account.address,
            tls_context=self._tls(target),
            timeout=self.settings.smtp_timeout_seconds,
        )

    def needs_attention(self, address: str) -> str:
        return "An admin must switch back to the platform service and set the connection up again."

    def explain_send_failure(self, err: MailError, address: str, mailbox: str = "") -> str:
        return explain_send_failure(err, address)
