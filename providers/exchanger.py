"""Mail exchangers: where the Internet delivers mail for a domain, found in DNS (MX records).

The round trip's check message goes to a custom address the way any outside sender's mail
does, so only the address's real mail routing (and the company's redirect in it) can bring it
back. In production the platform transport (an SMTP relay, Mailjet) delivers to the exchanger
itself; the lookup here tells the admin where it went, and stops early when the domain cannot
receive mail at all. In development and tests, RECRUITMAIL_MX_OVERRIDES names a domain's
exchanger, and check messages for that domain are delivered there directly.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.resolver import DnsUnavailable, NoSuchDomain, Resolver
from core.settings import Settings
from core.tls import client_tls_context
from providers.base import Outgoing
from providers.smtp import SmtpSecurity, SmtpTarget, send_over_smtp


@dataclass(frozen=True)
class Exchanger:
    host: str
    port: int = 25
    preference: int = 0

    @property
    def label(self) -> str:
        return self.host if self.port == 25 else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Routing:
    """What DNS says about a domain's mail: its exchangers, best first; whether they came from
    RECRUITMAIL_MX_OVERRIDES; and, when the domain cannot receive mail, why (else None)."""

    exchangers: tuple[Exchanger, ...] = ()
    override: bool = False
    refusal: str | None = None
    looked_up: bool = True  # False when DNS did not answer: the transport will try anyway


async def routing(settings: Settings, domain: str) -> Routing:
    domain = domain.lower().rstrip(".")
    override = settings.exchanger_overrides().get(domain)
    if override is not None:
        return Routing((Exchanger(*override),), override=True)
    resolver = settings.resolver()
    try:
        records = await resolver.mx_async(domain)
    except NoSuchDomain:
        return Routing(refusal=f"The domain {domain} does not exist in DNS.")
    except DnsUnavailable:
        return Routing(looked_up=False)
    if not records:
        # No MX record: RFC 5321 5.1 delivers to the domain's own address (an implicit MX).
        return await _implicit(resolver, domain)
    exchangers = tuple(Exchanger(host, 25, preference) for preference, host in records)
    if len(exchangers) == 1 and exchangers[0].host in ("", "."):
        # A null MX (RFC 7505): the domain says it accepts no mail.
        return Routing(refusal=f"The domain {domain} publishes a null MX: it accepts no mail.")
    return Routing(exchangers)


async def _implicit(resolver: Resolver, domain: str) -> Routing:
    for kind in ("A", "AAAA"):
        try:
            if not await resolver.answer_async(domain, kind):
                continue
        except (DnsUnavailable, NoSuchDomain):
            return Routing(looked_up=False)
        return Routing((Exchanger(domain),))
    return Routing(refusal=f"The domain {domain} has no mail exchanger (no MX, A or AAAA record).")


async def deliver_direct(settings: Settings, exchanger: Exchanger, mail: Outgoing) -> str:
    """Deliver to an exchanger as an MTA does: port 25, STARTTLS when offered, no sign-in.
    Certificates of mail exchangers are often self-signed, and MTAs do not insist on them."""
    target = SmtpTarget(
        host=exchanger.host,
        port=exchanger.port,
        security=SmtpSecurity.OPPORTUNISTIC,
        verify_certificate=False,
        helo=settings.helo_name,
    )
    return await send_over_smtp(
        target,
        mail,
        tls_context=client_tls_context(settings.ca_bundle, verify=False),
        timeout=settings.smtp_timeout_seconds,
    )
