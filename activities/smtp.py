"""Sending raw MIME over SMTP with aiosmtplib, and turning its failures into MailErrors."""

from __future__ import annotations

import asyncio
import socket
import ssl
from dataclasses import dataclass
from enum import StrEnum

import aiosmtplib

from core.errors import (
    AuthExpiredError,
    ConfigurationError,
    MailError,
    PermanentMailError,
    TransientMailError,
)
from core.mail import Composed


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

    @property
    def label(self) -> str:
        return f"{self.host}:{self.port}"


def _client(target: SmtpTarget, tls_context: ssl.SSLContext, timeout: float) -> aiosmtplib.SMTP:
    start_tls: bool | None = {
        SmtpSecurity.STARTTLS: True,
        SmtpSecurity.TLS: False,
        SmtpSecurity.NONE: False,
        SmtpSecurity.OPPORTUNISTIC: None,
    }[target.security]
    return aiosmtplib.SMTP(
        hostname=target.host,
        port=target.port,
        use_tls=target.security is SmtpSecurity.TLS,
        start_tls=start_tls,
        validate_certs=target.verify_certificate,
        tls_context=tls_context if target.security is not SmtpSecurity.NONE else None,
        timeout=timeout,
    )


async def send_over_smtp(
    target: SmtpTarget, composed: Composed, *, tls_context: ssl.SSLContext, timeout: float
) -> str:
    """Send one message on a fresh connection; return the server's final answer."""
    client = _client(target, tls_context, timeout)
    try:
        async with client:
            if target.username:
                await client.login(target.username, target.password or "")
            refused, answer = await client.sendmail(
                composed.envelope_from, composed.envelope_to, composed.mime
            )
    except Exception as exc:  # every aiosmtplib and socket failure is classified below
        raise classify_smtp_error(exc, target.label) from exc
    if refused:
        # One recipient of several refused comes back here, not as an exception.
        address, (code, text) = next(iter(refused.items()))
        raise classify_smtp_error(
            aiosmtplib.SMTPRecipientRefused(code, text, address), target.label
        )
    return answer


class SmtpSession:
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
        client = _client(self.target, self.tls_context, self.timeout)
        await client.connect()
        if self.target.username:
            await client.login(self.target.username, self.target.password or "")
        self.connects += 1
        return client

    async def send(self, composed: Composed) -> str:
        last: BaseException | None = None
        for _ in range(3):
            try:
                if self.client is None or not self.client.is_connected:
                    self.client = await self._connect()
                refused, answer = await self.client.sendmail(
                    composed.envelope_from, composed.envelope_to, composed.mime
                )
            except (aiosmtplib.SMTPServerDisconnected, ConnectionError) as exc:
                last = exc
                await self._drop()
                continue
            except aiosmtplib.SMTPResponseException as exc:
                if exc.code == 421:  # the server is closing this session: reconnect
                    last = exc
                    await self._drop()
                    continue
                if not isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
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


def classify_smtp_error(exc: BaseException, server: str) -> MailError:
    """Map an aiosmtplib/socket error to transient, permanent or credential problems."""
    if isinstance(exc, MailError):
        return exc
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return AuthExpiredError(
            f"The mail server {server} refused the username or password "
            f"({_server_said(exc.code, exc.message)})."
        )
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        first = exc.recipients[0] if exc.recipients else None
        if first is not None:
            return classify_smtp_error(first, server)
    if isinstance(exc, aiosmtplib.SMTPRecipientRefused):
        said = _server_said(exc.code, exc.message)
        if 400 <= exc.code < 500:
            return TransientMailError(
                f"The receiving server temporarily refused {exc.recipient} ({said})."
            )
        return PermanentMailError(
            f"The recipient address {exc.recipient} was rejected ({said}). "
            "Check the candidate's email address."
        )
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected | aiosmtplib.SMTPConnectError):
        return TransientMailError(f"Could not reach the mail server {server}: {exc}.")
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | TimeoutError):
        return TransientMailError(f"The mail server {server} did not answer in time.")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        said = _server_said(exc.code, exc.message)
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
        return TransientMailError(f"Could not reach the mail server {server}: {exc}.")
    return TransientMailError(f"Sending through {server} failed unexpectedly: {exc!r}.")


# -- connection test ------------------------------------------------------------------------

_MICROSOFT_AUTH_DISABLED = (
    "SMTP AUTH is disabled for this Microsoft 365 tenant or mailbox (5.7.139). An Exchange "
    "administrator can enable it for the mailbox: Microsoft 365 admin center → Users → Active "
    "users → the mailbox → Mail → Manage email apps → Authenticated SMTP, or "
    "`Set-CASMailbox -Identity {address} -SmtpClientAuthenticationDisabled $false`. "
    'Or connect the mailbox with Microsoft sign-in ("kind": "microsoft") instead.'
)
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
    if "5.7.139" in said:
        return _MICROSOFT_AUTH_DISABLED.format(address=address)
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


class _StepFailed(Exception):
    pass


class StepLog:
    def __init__(self) -> None:
        self.steps: list[dict] = []

    def ok(self, name: str, detail: str = "") -> None:
        self.steps.append({"name": name, "status": "ok", "detail": detail})

    def fail(self, name: str, detail: str) -> _StepFailed:
        self.steps.append({"name": name, "status": "failed", "detail": detail})
        return _StepFailed(detail)

    def skip(self, name: str, detail: str = "") -> None:
        self.steps.append({"name": name, "status": "skipped", "detail": detail})


async def verify_smtp(
    target: SmtpTarget, mail_from: str, *, tls_context: ssl.SSLContext, timeout: float
) -> tuple[bool, list[dict], str | None]:
    """Walk the connection step by step, recording each; nothing is sent (MAIL FROM, RSET)."""
    log = StepLog()
    server = target.label
    try:
        await _verify(target, mail_from, tls_context, timeout, log, server)
    except _StepFailed as failed:
        return False, log.steps, str(failed)
    return True, log.steps, None


async def _verify(
    target: SmtpTarget,
    mail_from: str,
    tls_context: ssl.SSLContext,
    timeout: float,
    log: StepLog,
    server: str,
) -> None:
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM), timeout
        )
        log.ok("dns", f"{target.host} resolves to {infos[0][4][0]}")
    except (OSError, TimeoutError):
        raise log.fail(
            "dns", f"The host name {target.host} cannot be resolved. Check the spelling."
        ) from None

    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(target.host, target.port), timeout
        )
        writer.close()
        log.ok("tcp_connect", f"connected to {server}")
    except TimeoutError:
        raise log.fail(
            "tcp_connect",
            f"Connecting to {server} timed out. Check the port, and that a firewall allows it.",
        ) from None
    except OSError as exc:
        raise log.fail(
            "tcp_connect",
            f"{server} refused the connection ({exc.strerror or exc}). Check the port.",
        ) from None

    implicit = target.security is SmtpSecurity.TLS
    client = aiosmtplib.SMTP(
        hostname=target.host,
        port=target.port,
        use_tls=implicit,
        start_tls=False,
        validate_certs=target.verify_certificate,
        tls_context=tls_context if target.security is not SmtpSecurity.NONE else None,
        timeout=timeout,
    )
    try:
        try:
            await client.connect()
        except (ssl.SSLError, ssl.CertificateError) as exc:
            raise log.fail("tls_handshake", explain_tls_failure(exc, server)) from None
        except aiosmtplib.SMTPException as exc:
            if implicit and isinstance(exc.__cause__, ssl.SSLError):
                raise log.fail(
                    "tls_handshake", explain_tls_failure(exc.__cause__, server)
                ) from None
            raise log.fail(
                "greeting",
                f"{server} did not greet as an SMTP server ({exc}). "
                + ("Is it an implicit-TLS port? Try port 465." if not implicit else ""),
            ) from None
        if implicit:
            log.ok("tls_handshake", "implicit TLS, certificate verified")
        await _ehlo(client, log, server)

        if target.security is SmtpSecurity.STARTTLS:
            if not client.supports_extension("starttls"):
                raise log.fail(
                    "starttls_offered",
                    f"{server} does not offer STARTTLS, so the password cannot be sent safely. "
                    'Use its TLS port (465, "security": "tls") or enable STARTTLS.',
                )
            log.ok("starttls_offered")
            try:
                await client.starttls()
            except (ssl.SSLError, ssl.CertificateError) as exc:
                raise log.fail("tls_handshake", explain_tls_failure(exc, server)) from None
            except aiosmtplib.SMTPException as exc:
                cause = exc.__cause__
                if isinstance(cause, ssl.SSLError):
                    raise log.fail("tls_handshake", explain_tls_failure(cause, server)) from None
                raise log.fail("tls_handshake", f"STARTTLS failed ({exc}).") from None
            log.ok("tls_handshake", "STARTTLS, certificate verified")
            await _ehlo(client, log, server)
        elif target.security is SmtpSecurity.NONE:
            log.skip("tls_handshake", "security is none (allowed by the operator)")

        if not client.supports_extension("auth"):
            encrypted = target.security is not SmtpSecurity.NONE
            raise log.fail(
                "auth_offered",
                f"{server} does not offer AUTH"
                + ("." if encrypted else " without TLS: choose starttls or tls."),
            )
        log.ok("auth_offered", ", ".join(sorted(client.server_auth_methods)))
        try:
            await client.login(target.username or "", target.password or "")
        except aiosmtplib.SMTPResponseException as exc:
            raise log.fail("auth", explain_auth_failure(exc, mail_from)) from None
        except aiosmtplib.SMTPException as exc:
            raise log.fail("auth", f"Signing in failed: {exc}.") from None
        log.ok("auth", f"signed in as {target.username}")

        try:
            await client.mail(mail_from)
        except aiosmtplib.SMTPResponseException as exc:
            said = _smtp_said(exc)
            if "5.7.60" in said or "sendasdenied" in said.lower().replace(" ", ""):
                raise log.fail("mail_from", _SEND_AS_DENIED.format(address=mail_from)) from None
            if exc.code == 530:
                raise log.fail("mail_from", _MUST_STARTTLS) from None
            raise log.fail(
                "mail_from", f"The server refused {mail_from} as the sender ({said})."
            ) from None
        log.ok("mail_from", f"{mail_from} accepted as sender")
        await client.rset()
        log.ok("rset", "nothing was sent")
        try:
            await client.quit()
        except aiosmtplib.SMTPException:
            pass  # some servers drop the line on QUIT; the test already passed
    except aiosmtplib.SMTPTimeoutError:
        raise log.fail("timeout", f"{server} stopped answering (timeout).") from None
    except aiosmtplib.SMTPServerDisconnected as exc:
        raise log.fail("disconnected", f"{server} closed the connection ({exc}).") from None
    finally:
        client.close()


async def _ehlo(client: aiosmtplib.SMTP, log: StepLog, server: str) -> None:
    try:
        await client.ehlo()
    except aiosmtplib.SMTPResponseException as exc:
        raise log.fail("ehlo", f"{server} refused EHLO ({_smtp_said(exc)}).") from None
    log.ok("ehlo")
