"""Mailjet Send API v3.1: a platform transport over HTTPS (httpx)."""

from __future__ import annotations

import base64
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any, ClassVar, cast

import httpx

from core.errors import ConfigurationError, PermanentMailError
from core.settings import Settings
from providers.base import Account, MailProvider, MailSession, Outgoing
from providers.http import HttpClients, raise_for_answer, send_request

# Send API v3.1: "Size of all attachments, including inline may not exceed 15 MB total"
# (github.com/mailjet/api-documentation, guides/_send-api.md, the Attachments and
# InlinedAttachments properties). Counted here on the files' own bytes, in decimal megabytes.
ATTACHMENTS_LIMIT = 15_000_000


def payload(message: EmailMessage, custom_id: str) -> dict[str, Any]:
    """The Send API's JSON for one message, built from its composed MIME."""
    sender = message["From"].addresses[0]
    headers = {
        name: str(message[name])
        for name in ("Message-ID", "In-Reply-To", "References")
        if message[name]
    }
    item: dict[str, Any] = {
        "From": {"Email": sender.addr_spec, "Name": sender.display_name},
        "To": [{"Email": a.addr_spec, "Name": a.display_name} for a in message["To"].addresses],
        "Subject": str(message["Subject"]),
        "Headers": headers,
        "CustomID": custom_id,
    }
    plain = message.get_body(("plain",))
    html = message.get_body(("html",))
    # Parsed from the wire form, so lines end in CRLF; the API wants plain text.
    if isinstance(plain, EmailMessage):
        item["TextPart"] = plain.get_content().replace("\r\n", "\n")
    if isinstance(html, EmailMessage):
        item["HTMLPart"] = html.get_content().replace("\r\n", "\n")
    files = [
        (
            part.get_content_type(),
            part.get_filename() or "attachment",
            part.get_payload(decode=True),
        )
        for part in message.iter_attachments()
    ]
    total = sum(len(cast(bytes, data)) for _, _, data in files)
    if total > ATTACHMENTS_LIMIT:  # before any request: every attempt would be refused alike
        raise PermanentMailError(
            f"This message's files are {total / 1_000_000:.1f} MB in all; Mailjet accepts up to "
            f"{ATTACHMENTS_LIMIT / 1_000_000:.1f} MB of files per message. Send smaller files, "
            "or link to them in the text."
        )
    attachments = [
        {
            "ContentType": kind,
            "Filename": name,
            "Base64Content": base64.b64encode(cast(bytes, data)).decode(),
        }
        for kind, name, data in files
    ]
    if attachments:
        item["Attachments"] = attachments
    return {"Messages": [item]}


def result_of(response: httpx.Response) -> str:
    """Mailjet's message id, or the MailError its answer means."""
    raise_for_answer(
        response,
        "Mailjet",
        # The platform's own key: an operator must fix it, no mailbox needs attention.
        unauthorized=lambda _: _refused_key(),
        forbidden=lambda _: _refused_key(),
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


def _refused_key() -> ConfigurationError:
    return ConfigurationError(
        "Mailjet refused the platform's API key "
        "(check RECRUITMAIL_MAILJET_API_KEY and RECRUITMAIL_MAILJET_API_SECRET)."
    )


class _MailjetSession(MailSession):
    def __init__(self, provider: MailjetProvider) -> None:
        self._provider = provider

    async def send(self, mail: Outgoing) -> str:
        settings = self._provider.settings
        message = message_from_bytes(mail.mime, policy=default_policy)
        response = await send_request(
            self._provider.http,
            "Mailjet",
            "POST",
            settings.mailjet_api_url.rstrip("/") + "/v3.1/send",
            json=payload(message, mail.custom_id),
            auth=(settings.mailjet_api_key, settings.mailjet_api_secret),
        )
        return result_of(response)


class MailjetProvider(MailProvider):
    """The platform's hosted mail through Mailjet (RECRUITMAIL_PLATFORM_TRANSPORT=mailjet)."""

    kind: ClassVar[str] = "mailjet"
    label: ClassVar[str] = "Mailjet"
    platform: ClassVar[bool] = True

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.http = HttpClients(settings, settings.smtp_timeout_seconds)

    def platform_account(self) -> Account:
        if not (self.settings.mailjet_api_key and self.settings.mailjet_api_secret):
            raise ConfigurationError("Mailjet is selected but its API key is not set.")
        return Account(address="")

    def session(self, account: Account) -> MailSession:
        return _MailjetSession(self)
