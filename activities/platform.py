"""The platform transport: the dev outbox, an SMTP relay, or the Mailjet Send API v3.1."""

from __future__ import annotations

import base64
import ssl
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from typing import Protocol
from urllib.parse import unquote, urlsplit

import httpx

from activities.smtp import SmtpSecurity, SmtpSession, SmtpTarget, send_over_smtp
from core.errors import (
    ConfigurationError,
    PermanentMailError,
    TransientMailError,
)
from core.mail import Composed
from core.models import utcnow
from core.settings import PlatformTransportKind, Settings
from core.tls import client_tls_context


class Transport(Protocol):
    name: str

    async def send(self, message: EmailMessage, composed: Composed, custom_id: str) -> str:
        """Send the message; return the provider's id or final answer. Raises MailError."""


class BatchSender(Protocol):
    """Many messages through one transport: a reused SMTP session, or one call per message."""

    async def send(self, message: EmailMessage, composed: Composed, custom_id: str) -> str: ...

    async def close(self) -> None: ...


@dataclass
class PerMessageSender:
    transport: Transport

    async def send(self, message: EmailMessage, composed: Composed, custom_id: str) -> str:
        return await self.transport.send(message, composed, custom_id)

    async def close(self) -> None:
        return None


@dataclass
class SessionSender:
    session: SmtpSession

    async def send(self, message: EmailMessage, composed: Composed, custom_id: str) -> str:
        return await self.session.send(composed)

    async def close(self) -> None:
        await self.session.close()


def batch_sender(transport: Transport) -> BatchSender:
    if isinstance(transport, SmtpTransport):
        return SessionSender(
            SmtpSession(transport.target, transport.tls_context, transport.timeout)
        )
    return PerMessageSender(transport)


_SCHEMES = {
    "smtp": SmtpSecurity.OPPORTUNISTIC,
    "smtp+starttls": SmtpSecurity.STARTTLS,
    "smtps": SmtpSecurity.TLS,
}


def parse_relay_url(url: str) -> SmtpTarget:
    """`smtp://user:pass@host:587`, `smtp+starttls://…`, `smtps://host:465`; `?verify=false`."""
    parts = urlsplit(url)
    security = _SCHEMES.get(parts.scheme)
    if security is None or not parts.hostname:
        raise ConfigurationError(
            f"RECRUITMAIL_SMTP_RELAY_URL must look like smtp://user:password@host:587, "
            f"smtp+starttls://… or smtps://…:465 (got scheme {parts.scheme!r})"
        )
    default_port = 465 if security is SmtpSecurity.TLS else 587
    verify = "verify=false" not in (parts.query or "").lower()
    return SmtpTarget(
        host=parts.hostname,
        port=parts.port or default_port,
        security=security,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        verify_certificate=verify,
    )


@dataclass
class SmtpTransport:
    target: SmtpTarget
    tls_context: ssl.SSLContext
    timeout: float
    name: str = "smtp"

    async def send(self, message: EmailMessage, composed: Composed, custom_id: str) -> str:
        return await send_over_smtp(
            self.target, composed, tls_context=self.tls_context, timeout=self.timeout
        )


def _retry_after(response: httpx.Response) -> timedelta | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    if value.strip().isdigit():
        return timedelta(seconds=int(value))
    try:
        return max(parsedate_to_datetime(value) - utcnow(), timedelta(0))
    except (TypeError, ValueError):
        return None


@dataclass
class MailjetTransport:
    api_url: str
    api_key: str
    api_secret: str
    tls_context: ssl.SSLContext
    timeout: float
    name: str = "mailjet"

    def payload(self, message: EmailMessage, custom_id: str) -> dict:
        sender = message["From"].addresses[0]
        headers = {
            name: str(message[name])
            for name in ("Message-ID", "In-Reply-To", "References")
            if message[name]
        }
        item: dict = {
            "From": {"Email": sender.addr_spec, "Name": sender.display_name},
            "To": [{"Email": a.addr_spec, "Name": a.display_name} for a in message["To"].addresses],
            "Subject": str(message["Subject"]),
            "Headers": headers,
            "CustomID": custom_id,
        }
        plain = message.get_body(("plain",))
        html = message.get_body(("html",))
        # Parsed from the wire form, so lines end in CRLF; the API wants plain text.
        if plain is not None:
            item["TextPart"] = plain.get_content().replace("\r\n", "\n")
        if html is not None:
            item["HTMLPart"] = html.get_content().replace("\r\n", "\n")
        attachments = [
            {
                "ContentType": part.get_content_type(),
                "Filename": part.get_filename() or "attachment",
                "Base64Content": base64.b64encode(part.get_payload(decode=True)).decode(),
            }
            for part in message.iter_attachments()
        ]
        if attachments:
            item["Attachments"] = attachments
        return {"Messages": [item]}

    async def send(self, message: EmailMessage, composed: Composed, custom_id: str) -> str:
        url = self.api_url.rstrip("/") + "/v3.1/send"
        try:
            async with httpx.AsyncClient(verify=self.tls_context, timeout=self.timeout) as http:
                response = await http.post(
                    url, json=self.payload(message, custom_id), auth=(self.api_key, self.api_secret)
                )
        except httpx.TimeoutException as exc:
            raise TransientMailError("Mailjet did not answer in time.") from exc
        except httpx.TransportError as exc:
            raise TransientMailError(f"Could not reach Mailjet: {exc}.") from exc
        return self._result(response)

    @staticmethod
    def _result(response: httpx.Response) -> str:
        if response.status_code == 429:
            raise TransientMailError(
                "Mailjet is throttling the platform's sending.", retry_after=_retry_after(response)
            )
        if response.status_code >= 500:
            raise TransientMailError(
                f"Mailjet had a temporary problem (HTTP {response.status_code}).",
                retry_after=_retry_after(response),
            )
        if response.status_code in (401, 403):
            raise ConfigurationError(
                "Mailjet refused the platform's API key "
                "(check RECRUITMAIL_MAILJET_API_KEY and RECRUITMAIL_MAILJET_API_SECRET)."
            )
        try:
            result = response.json()["Messages"][0]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise PermanentMailError(
                f"Mailjet answered HTTP {response.status_code} with an unreadable body."
            ) from exc
        if result.get("Status") == "success":
            return str(result["To"][0]["MessageID"])
        errors = result.get("Errors") or []
        detail = "; ".join(e.get("ErrorMessage", "") for e in errors) or "no detail"
        raise PermanentMailError(f"Mailjet refused the message: {detail}.")


def platform_transport(settings: Settings) -> Transport:
    tls = client_tls_context(settings.ca_bundle)
    timeout = settings.smtp_timeout_seconds
    match settings.platform_transport:
        case PlatformTransportKind.DEV_OUTBOX:
            target = SmtpTarget(
                host=settings.dev_outbox_host,
                port=settings.dev_outbox_port,
                security=SmtpSecurity.NONE,
            )
            return SmtpTransport(target, tls, timeout, name="dev_outbox")
        case PlatformTransportKind.SMTP:
            target = parse_relay_url(settings.smtp_relay_url)
            tls = client_tls_context(settings.ca_bundle, verify=target.verify_certificate)
            return SmtpTransport(target, tls, timeout, name="smtp_relay")
        case PlatformTransportKind.MAILJET:
            if not (settings.mailjet_api_key and settings.mailjet_api_secret):
                raise ConfigurationError("Mailjet is selected but its API key is not set.")
            return MailjetTransport(
                settings.mailjet_api_url,
                settings.mailjet_api_key,
                settings.mailjet_api_secret,
                tls,
                timeout,
            )
