"""DMARC (RFC 7489): the policy a domain publishes for mail that claims to be from it, and
whether a message's SPF or DKIM result aligns with its From domain."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from publicsuffixlist import PublicSuffixList

from core.resolver import DnsUnavailable, Resolver


@cache
def _suffixes() -> PublicSuffixList:
    return PublicSuffixList()  # the list the package ships: no download


def organizational(domain: str) -> str:
    """The registered domain (RFC 7489 3.2): mail.acme.co.uk → acme.co.uk."""
    domain = domain.lower().rstrip(".")
    return _suffixes().privatesuffix(domain) or domain


def aligned(a: str, b: str, *, strict: bool) -> bool:
    a, b = a.lower().rstrip("."), b.lower().rstrip(".")
    if strict:
        return a == b
    return bool(a and b) and organizational(a) == organizational(b)


@dataclass(frozen=True)
class Policy:
    domain: str  # where the record was found: the From domain or its organizational domain
    p: str  # none, quarantine, reject
    sp: str  # for subdomains (found at the organizational domain)
    adkim: str = "r"
    aspf: str = "r"
    pct: int = 100
    record: str = ""

    def for_domain(self, from_domain: str) -> str:
        """The policy that applies to mail from `from_domain`."""
        return self.sp if from_domain.lower() != self.domain else self.p


def parse(record: str, domain: str) -> Policy | None:
    tags: dict[str, str] = {}
    for part in record.split(";"):
        key, _, value = part.strip().partition("=")
        if key:
            tags[key.strip().lower()] = value.strip()
    if tags.get("v", "").upper() != "DMARC1":
        return None
    p = tags.get("p", "").lower()
    if p not in ("none", "quarantine", "reject"):
        p = "none"  # RFC 7489 6.6.3: an invalid or missing p with a rua acts as none
    sp = tags.get("sp", "").lower()
    try:
        pct = max(0, min(100, int(tags.get("pct", "100"))))
    except ValueError:
        pct = 100
    return Policy(
        domain=domain,
        p=p,
        sp=sp if sp in ("none", "quarantine", "reject") else p,
        adkim="s" if tags.get("adkim", "r").lower() == "s" else "r",
        aspf="s" if tags.get("aspf", "r").lower() == "s" else "r",
        pct=pct,
        record=record,
    )


def lookup(from_domain: str, resolver: Resolver) -> Policy | None:
    """The DMARC record for `from_domain`: its own, else its organizational domain's."""
    domain = from_domain.lower().rstrip(".")
    for where in dict.fromkeys((domain, organizational(domain))):
        for record in resolver.txt(f"_dmarc.{where}"):
            policy = parse(record, where)
            if policy is not None:
                return policy
    return None


@dataclass(frozen=True)
class Verdict:
    result: str  # pass, fail, none (no policy), temperror
    policy: str  # the policy that applies: none, quarantine, reject ("" without a record)
    domain: str  # the From domain
    detail: str


def evaluate(
    from_domain: str,
    *,
    spf_result: str,
    spf_domain: str,
    dkim_domains: list[str],
    resolver: Resolver,
) -> Verdict:
    """DMARC for a message from `from_domain`: passes when SPF passed for an aligned domain,
    or a DKIM signature of an aligned domain verified (`dkim_domains`: those that verified)."""
    try:
        policy = lookup(from_domain, resolver)
    except DnsUnavailable as exc:
        return Verdict("temperror", "", from_domain, f"its DMARC record could not be read ({exc})")
    if policy is None:
        return Verdict("none", "", from_domain, f"{from_domain} publishes no DMARC policy")
    applies = policy.for_domain(from_domain)
    spf_ok = spf_result == "pass" and aligned(spf_domain, from_domain, strict=policy.aspf == "s")
    dkim_ok = any(aligned(d, from_domain, strict=policy.adkim == "s") for d in dkim_domains)
    if spf_ok or dkim_ok:
        how = "SPF" if spf_ok else "DKIM"
        return Verdict("pass", applies, from_domain, f"{how} aligned with {from_domain}")
    return Verdict(
        "fail",
        applies,
        from_domain,
        f"neither SPF ({spf_result} for {spf_domain or 'no domain'}) nor a DKIM signature "
        f"({', '.join(dkim_domains) or 'none verified'}) is aligned with {from_domain}, whose "
        f"DMARC policy is p={applies}",
    )
