"""The platform's SMTP transports: a relay (RECRUITMAIL_SMTP_RELAY_URL) and, in development,
the dev outbox. Hosted mail goes through one of them, or through Mailjet."""

from __future__ import annotations

import ssl
from abc import abstractmethod
from dataclasses import replace
from typing import ClassVar
from urllib.parse import unquote, urlsplit

from core.deliverability.dkim import DkimSigner
from core.errors import ConfigurationError
from core.outbox import OUTBOX_COMPANY_HEADER
from core.throttle import Rate, rate_of
from core.tls import client_tls_context
from providers.base import Account, MailProvider, MailSession, Outgoing
from providers.smtp import SmtpSecurity, SmtpSession, SmtpTarget, send_over_smtp

_SCHEMES = {
    "smtp": SmtpSecurity.OPPORTUNISTIC,
    "smtp+starttls": SmtpSecurity.STARTTLS,
    "smtps": SmtpSecurity.TLS,
}


def parse_relay_url(url: str, helo: str = "") -> SmtpTarget:
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
        helo=helo,
    )


class _PlatformSmtp(MailProvider):
    """SMTP to a server the operator configured; the target comes from settings."""

    platform: ClassVar[bool] = True

    @abstractmethod
    def target(self) -> SmtpTarget:
        """Where this transport sends."""

    def platform_account(self) -> Account:
        self.target()  # a wrong relay URL fails here, with its explanation
        return Account(address="")

    def _tls(self, target: SmtpTarget) -> ssl.SSLContext:
        return client_tls_context(self.settings.ca_bundle, verify=target.verify_certificate)

    def rate(self) -> Rate:
        return rate_of("platform", self.settings)

    def session(self, account: Account) -> MailSession:
        target = self.target()
        return SmtpSession(target, self._tls(target), self.settings.smtp_timeout_seconds)

    async def send(self, account: Account, mail: Outgoing) -> str:
        target = self.target()
        return await send_over_smtp(
            target, mail, tls_context=self._tls(target), timeout=self.settings.smtp_timeout_seconds
        )


class SmtpRelayProvider(_PlatformSmtp):
    """RECRUITMAIL_PLATFORM_TRANSPORT=smtp: an SMTP relay given as a URL. With
    RECRUITMAIL_DKIM_SELECTOR and RECRUITMAIL_DKIM_PRIVATE_KEY_FILE, each message from the
    platform domain is signed with DKIM (d= the platform domain) before it goes."""

    kind: ClassVar[str] = "smtp_relay"
    label: ClassVar[str] = "SMTP relay"

    def target(self) -> SmtpTarget:
        return parse_relay_url(self.settings.smtp_relay_url, self.settings.helo_name)

    def _signer(self) -> DkimSigner | None:
        if not (self.settings.dkim_selector and self.settings.dkim_private_key_file):
            return None
        return DkimSigner.load(
            self.settings.dkim_selector,
            self.settings.platform_mail_domain,
            self.settings.dkim_private_key_file,
        )

    def session(self, account: Account) -> MailSession:
        inner = super().session(account)
        signer = self._signer()
        return inner if signer is None else _SigningSession(inner, signer)

    async def send(self, account: Account, mail: Outgoing) -> str:
        signer = self._signer()
        return await super().send(account, signer.sign(mail) if signer else mail)


class _SigningSession(MailSession):
    def __init__(self, inner: MailSession, signer: DkimSigner) -> None:
        self._inner = inner
        self._signer = signer

    async def send(self, mail: Outgoing) -> str:
        return await self._inner.send(self._signer.sign(mail))

    async def close(self) -> None:
        await self._inner.close()


class DevOutboxProvider(_PlatformSmtp):
    """Development only: the local sink whose mail `GET /dev/outbox` shows. Each message is
    tagged with the company it was sent for (worker/outbox.py files it under that company and
    strips the tag), so a company sees its own mail by id, never by an address it claims."""

    kind: ClassVar[str] = "dev_outbox"
    label: ClassVar[str] = "dev outbox"

    def target(self) -> SmtpTarget:
        return SmtpTarget(
            host=self.settings.dev_outbox_host,
            port=self.settings.dev_outbox_port,
            security=SmtpSecurity.NONE,
            helo=self.settings.helo_name,
        )

    def session(self, account: Account) -> MailSession:
        return _TaggingSession(super().session(account))

    async def send(self, account: Account, mail: Outgoing) -> str:
        return await super().send(account, tagged(mail))


def tagged(mail: Outgoing) -> Outgoing:
    tag = f"{OUTBOX_COMPANY_HEADER}: {mail.company_id or 'none'}\r\n".encode()
    return replace(mail, mime=tag + mail.mime)


class _TaggingSession(MailSession):
    def __init__(self, inner: MailSession) -> None:
        self._inner = inner

    async def send(self, mail: Outgoing) -> str:
        return await self._inner.send(tagged(mail))

    async def close(self) -> None:
        await self._inner.close()
