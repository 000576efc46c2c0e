"""Sending raw MIME over SMTP with aiosmtplib, and turning its failures into MailErrors."""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from enum import StrEnum

import aiosmtplib

from recruitmail.core.errors import (
    AuthExpiredError,
    ConfigurationError,
    MailError,
    PermanentMailError,
    TransientMailError,
)
from recruitmail.core.mail import Composed


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
