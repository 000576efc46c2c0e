"""The deliverability check of a connection and of the hosted sender (the rules are
core/deliverability/checks.py's): DNS through the one resolver, read when asked."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from core.deliverability import checks, dkim, spf
from core.deliverability.checks import Check, Report
from core.deliverability.dkim import DkimSigner
from core.models import Connection
from core.resolver import DnsUnavailable, NoSuchDomain
from core.settings import Settings


def _addresses(host: str, settings: Settings) -> list[str]:
    try:
        return [str(ipaddress.ip_address(host))]  # an address already
    except ValueError:
        pass
    resolver = settings.resolver()
    try:
        return [r.to_text() for r in resolver.answer(host, "A")]
    except (DnsUnavailable, NoSuchDomain):
        return []


def _server(domain: str, host: str, settings: Settings) -> tuple[str, bool | None]:
    """What SPF must authorise for mail sent through `host`, and whether it does."""
    found = _addresses(host, settings)
    if not found:
        return f"a:{host}", None
    result = spf.check(found[0], f"postmaster@{domain}", host, settings.resolver())
    return f"ip4:{found[0]}", result.result == "pass"


def for_connection(connection: Connection, settings: Settings) -> Report:
    domain = connection.custom_address.rpartition("@")[2].lower()
    resolver = settings.resolver()
    if connection.kind in checks.INCLUDES:
        authorised, allowed = f"include:{checks.INCLUDES[connection.kind]}", None
    else:
        authorised, allowed = _server(domain, connection.smtp_host or domain, settings)
    spf_check, spf_ok = checks.spf(
        domain, connection.kind, resolver, authorised=authorised, allowed=allowed
    )
    dkim_check, dkim_ok = checks.dkim(domain, connection.kind, connection.dkim_check)
    dmarc_check = checks.dmarc_check(domain, resolver, spf_ok=spf_ok, dkim_ok=dkim_ok)
    return Report(domain, (spf_check, dkim_check, dmarc_check))


def for_hosted(settings: Settings) -> Report:
    """The platform's own domain, as the hosted address sends from it."""
    domain = settings.platform_mail_domain.lower()
    resolver = settings.resolver()
    if settings.platform_transport == "mailjet":
        authorised, allowed = "include:spf.mailjet.com", None
    elif settings.platform_transport == "smtp" and settings.smtp_relay_url:
        host = urlsplit(settings.smtp_relay_url).hostname or domain
        authorised, allowed = _server(domain, host, settings)
    else:
        return Report(
            domain,
            (
                Check(
                    "spf",
                    checks.WARN,
                    "The platform sends to the development outbox: nothing leaves this machine, "
                    "so there is no sending path to check.",
                ),
            ),
        )
    spf_check, spf_ok = checks.spf(domain, "platform", resolver, authorised=authorised,
                                   allowed=allowed)  # fmt: skip
    dkim_check, dkim_ok = _platform_dkim(domain, settings)
    dmarc_check = checks.dmarc_check(domain, resolver, spf_ok=spf_ok, dkim_ok=dkim_ok)
    return Report(domain, (spf_check, dkim_check, dmarc_check))


def _platform_dkim(domain: str, settings: Settings) -> tuple[Check, bool]:
    """The relay's own signature, made on a probe message and verified through the resolver
    as a receiver would (its key published at {selector}._domainkey.{domain})."""
    if settings.platform_transport != "smtp" or not (
        settings.dkim_selector and settings.dkim_private_key_file
    ):
        return (
            Check(
                "dkim",
                checks.WARN,
                "The platform's mail is not signed with DKIM: set RECRUITMAIL_DKIM_SELECTOR and "
                "RECRUITMAIL_DKIM_PRIVATE_KEY_FILE (the SMTP relay transport signs), or sign at "
                "the provider (Mailjet: docs/operating.md). DMARC relies on SPF meanwhile.",
            ),
            False,
        )
    signer = DkimSigner.load(settings.dkim_selector, domain, settings.dkim_private_key_file)
    probe = (
        f"From: probe@{domain}\r\nTo: probe@{domain}\r\nSubject: DKIM probe\r\n"
        f"Message-ID: <dkim-probe@{domain}>\r\n\r\nProbe.\r\n"
    ).encode()
    found = dkim.signatures(signer.signature(probe) + probe, settings.resolver())
    return checks.dkim(domain, "platform", {"signatures": [s.__dict__ for s in found]})
