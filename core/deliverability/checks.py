"""Sender authentication, checked and explained: does the domain a company sends from pass
SPF, DKIM and DMARC for the way Recruitmail sends its mail? Each check is `pass`, `warn` or
`fail`, with a sentence and the exact DNS record to add or change (docs/deliverability.md).

- SPF: the domain's record authorises the sending path (Google's `include:_spf.google.com`,
  Microsoft's `include:spf.protection.outlook.com`, the SMTP server's address, the platform
  relay's), within RFC 7208's 10 DNS lookups.
- DKIM: a signature on the round trip's own test message, as it came back through the
  address's redirect (dkimpy, through the one resolver), verified and aligned with the From
  domain (its `d=` the domain or a subdomain of the same organisation).
- DMARC: the domain's policy, and whether SPF or DKIM aligns, as Gmail, Yahoo and Outlook.com
  require of bulk senders.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

from core.deliverability import dkim as dkim_signatures
from core.deliverability import dmarc
from core.deliverability import spf as spf_rules
from core.deliverability.dkim import DkimSigner
from core.models import Connection
from core.resolver import DnsUnavailable, NoSuchDomain, Resolver
from core.settings import Settings

PASS, WARN, FAIL = "pass", "warn", "fail"
MAX_LOOKUPS = 10  # RFC 7208 §4.6.4
_LOOKUP_TERMS = re.compile(
    r"^[+\-~?]?(include:|a\b|a:|a/|mx\b|mx:|mx/|ptr|exists:|redirect=)", re.IGNORECASE
)
INCLUDES = {"google": "_spf.google.com", "microsoft": "spf.protection.outlook.com"}
DKIM_HOWTO = {
    "google": "In the Google Admin console: Apps → Google Workspace → Gmail → Authenticate "
    "email → the domain → Generate new record, publish it as the TXT record it names "
    "(google._domainkey.{domain}), then Start authentication.",
    "microsoft": "In the Microsoft Defender portal: Email & collaboration → Policies & rules → "
    "Threat policies → Email authentication settings → DKIM → the domain → publish the two "
    "CNAME records it shows (selector1._domainkey.{domain} and selector2._domainkey.{domain}), "
    "then turn on Sign messages for this domain with DKIM signatures.",
    "smtp": "Turn on DKIM signing for {domain} in the mail server (or its provider's admin "
    "page), and publish the TXT record it gives at {{selector}}._domainkey.{domain}.",
    "platform": "Publish the DKIM record of the platform's relay at "
    "{{selector}}._domainkey.{domain} (docs/operating.md lists the platform's records).",
}


@dataclass(frozen=True)
class Check:
    name: str  # spf, dkim, dmarc
    status: str  # pass, warn, fail
    sentence: str
    record: str | None = None  # the DNS record to add or change, exactly


@dataclass(frozen=True)
class Report:
    domain: str
    checks: tuple[Check, ...]

    @property
    def status(self) -> str:
        found = {c.status for c in self.checks}
        return FAIL if FAIL in found else WARN if WARN in found else PASS

    def as_dict(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "status": self.status,
            "checks": [asdict(c) for c in self.checks],
        }


def spf_record(domain: str, resolver: Resolver) -> str | None:
    records = [r for r in resolver.txt(domain) if r.lower().startswith("v=spf1")]
    return records[0] if records else None


def count_lookups(record: str, resolver: Resolver, depth: int = 0) -> int:
    """The DNS lookups evaluating `record` costs, includes followed (up to 4 levels)."""
    count = 0
    for term in record.split()[1:]:
        if not _LOOKUP_TERMS.match(term):
            continue
        count += 1
        target = term.split(":", 1)[1] if term.lower().lstrip("+-~?").startswith("include:") else ""
        if target and depth < 4:
            try:
                inner = spf_record(target, resolver)
            except DnsUnavailable:
                inner = None
            if inner:
                count += count_lookups(inner, resolver, depth + 1)
    return count


def spf(
    domain: str, kind: str, resolver: Resolver, *, authorised: str, allowed: bool | None = None
) -> tuple[Check, bool]:
    """SPF for mail from `domain` sent the `kind` way: the check, and whether SPF passes
    (for DMARC's alignment). `authorised` is the mechanism the record needs (an include, or
    `ip4:` the SMTP server's address); `allowed` is the SPF result for that server's address,
    when it could be computed."""
    try:
        record = spf_record(domain, resolver)
    except DnsUnavailable as exc:
        return Check("spf", WARN, f"The SPF record of {domain} could not be read ({exc})."), False
    if record is None:
        return (
            Check(
                "spf",
                FAIL,
                f"{domain} publishes no SPF record: receivers cannot tell Recruitmail's mail "
                "from forged mail.",
                f'{domain} TXT "v=spf1 {authorised} ~all"',
            ),
            False,
        )
    terms = {t.lower().lstrip("+") for t in record.split()}
    passes = allowed if allowed is not None else authorised.lower() in terms
    if not passes:
        fixed = record.replace(" ~all", f" {authorised} ~all").replace(
            " -all", f" {authorised} -all"
        )
        if fixed == record:
            fixed = f"{record} {authorised}"
        return (
            Check(
                "spf",
                FAIL,
                f"The SPF record of {domain} does not authorise the way this connection sends "
                f"({authorised} is missing).",
                f'{domain} TXT "{fixed}"',
            ),
            False,
        )
    lookups = count_lookups(record, resolver)
    if lookups > MAX_LOOKUPS:
        return (
            Check(
                "spf",
                WARN,
                f"The SPF record of {domain} authorises this connection, but evaluating it "
                f"takes {lookups} DNS lookups, over the limit of {MAX_LOOKUPS}: receivers may "
                "treat it as an error. Remove includes that are no longer used, or replace "
                "some with their addresses.",
            ),
            True,
        )
    return Check("spf", PASS, f"The SPF record of {domain} authorises this connection."), True


def dkim(domain: str, kind: str, result: dict[str, Any] | None) -> tuple[Check, bool]:
    """DKIM from the round trip's test message (`result`: what was verified when it came
    back), and whether an aligned signature verified."""
    howto = DKIM_HOWTO.get(kind, DKIM_HOWTO["smtp"]).format(domain=domain)
    if result is None:
        return (
            Check(
                "dkim",
                WARN,
                "Not checked yet: DKIM is verified on the round trip's test message when it "
                "comes back through the address's redirect.",
            ),
            False,
        )
    signatures = result.get("signatures", [])
    verified = [s for s in signatures if s.get("ok")]
    aligned = [s for s in verified if dmarc.aligned(s.get("domain", ""), domain, strict=False)]
    if aligned:
        signer = aligned[0]
        return (
            Check(
                "dkim",
                PASS,
                f"The test message carried a valid DKIM signature of {signer['domain']} "
                f"(selector {signer.get('selector', '')}), aligned with {domain}.",
            ),
            True,
        )
    if verified:
        names = ", ".join(sorted({s["domain"] for s in verified}))
        return (
            Check(
                "dkim",
                WARN,
                f"The test message was signed by {names}, not by {domain}: DMARC can rely on "
                f"SPF alone. {howto}",
            ),
            False,
        )
    if signatures:
        reasons = "; ".join(f"{s.get('domain')}: {s.get('detail')}" for s in signatures[:3])
        return Check("dkim", FAIL, f"The test message's DKIM signature failed ({reasons}). "
                     f"{howto}"), False  # fmt: skip
    return Check("dkim", FAIL, f"The test message carried no DKIM signature. {howto}"), False


def dmarc_check(domain: str, resolver: Resolver, *, spf_ok: bool, dkim_ok: bool) -> Check:
    record = f'_dmarc.{domain} TXT "v=DMARC1; p=none; rua=mailto:dmarc-reports@{domain}"'
    try:
        policy = dmarc.lookup(domain, resolver)
    except (DnsUnavailable, NoSuchDomain) as exc:
        return Check("dmarc", WARN, f"The DMARC record of {domain} could not be read ({exc}).")
    if policy is None:
        return Check(
            "dmarc",
            WARN,
            f"{domain} publishes no DMARC policy. Gmail, Yahoo and Outlook.com require one of "
            "bulk senders (p=none is enough to start, with aligned SPF or DKIM).",
            record,
        )
    applies = policy.for_domain(domain)
    if spf_ok or dkim_ok:
        how = "SPF and DKIM" if spf_ok and dkim_ok else "SPF" if spf_ok else "DKIM"
        return Check("dmarc", PASS, f"DMARC passes for {domain} (p={applies}): {how} aligned.")
    if applies in ("reject", "quarantine"):
        fate = "rejected" if applies == "reject" else "sent to spam"
        return Check(
            "dmarc",
            FAIL,
            f"{domain}'s DMARC policy is p={applies}, and neither SPF nor DKIM aligns for this "
            f"connection: its mail will be {fate}. Fix SPF or DKIM above.",
        )
    return Check(
        "dmarc",
        WARN,
        f"{domain}'s DMARC policy is p=none and neither SPF nor DKIM aligns: mail is delivered "
        "for now, but Gmail, Yahoo and Outlook.com expect alignment from bulk senders. Fix SPF "
        "or DKIM above.",
    )


# -- a connection, the hosted sender ----------------------------------------------------------


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
    result = spf_rules.check(found[0], f"postmaster@{domain}", host, settings.resolver())
    return f"ip4:{found[0]}", result.result == "pass"


def for_connection(connection: Connection, settings: Settings) -> Report:
    domain = connection.custom_address.rpartition("@")[2].lower()
    resolver = settings.resolver()
    if connection.kind in INCLUDES:
        authorised, allowed = f"include:{INCLUDES[connection.kind]}", None
    else:
        authorised, allowed = _server(domain, connection.smtp_host or domain, settings)
    spf_check, spf_ok = spf(
        domain, connection.kind, resolver, authorised=authorised, allowed=allowed
    )
    dkim_found, dkim_ok = dkim(domain, connection.kind, connection.dkim_check)
    policy = dmarc_check(domain, resolver, spf_ok=spf_ok, dkim_ok=dkim_ok)
    return Report(domain, (spf_check, dkim_found, policy))


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
                    WARN,
                    "The platform sends to the development outbox: nothing leaves this machine, "
                    "so there is no sending path to check.",
                ),
            ),
        )
    spf_check, spf_ok = spf(domain, "platform", resolver, authorised=authorised,
                                   allowed=allowed)  # fmt: skip
    dkim_found, dkim_ok = _platform_dkim(domain, settings)
    policy = dmarc_check(domain, resolver, spf_ok=spf_ok, dkim_ok=dkim_ok)
    return Report(domain, (spf_check, dkim_found, policy))


def _platform_dkim(domain: str, settings: Settings) -> tuple[Check, bool]:
    """The relay's own signature, made on a probe message and verified through the resolver
    as a receiver would (its key published at {selector}._domainkey.{domain})."""
    if settings.platform_transport != "smtp" or not (
        settings.dkim_selector and settings.dkim_private_key_file
    ):
        return (
            Check(
                "dkim",
                WARN,
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
    found = dkim_signatures.signatures(signer.signature(probe) + probe, settings.resolver())
    return dkim(domain, "platform", {"signatures": [s.__dict__ for s in found]})


def record(session: Any, connection: Connection, report: Report, at: str) -> bool:
    """Keep `report` on the connection; when its status changed, a
    connection.deliverability_changed event in the same transaction. True when it changed."""
    from core import events
    from core.events import EventType

    before = (connection.deliverability or {}).get("status")
    connection.deliverability = {**report.as_dict(), "checked_at": at}
    session.add(connection)
    if before == report.status:
        return False
    events.emit(
        session,
        connection.company_id,
        EventType.CONNECTION_DELIVERABILITY_CHANGED,
        {
            "connection_id": str(connection.id),
            "domain": report.domain,
            "from": before,
            "to": report.status,
            "failing": [c.name for c in report.checks if c.status == FAIL],
        },
    )
    return True
