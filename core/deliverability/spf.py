"""SPF (RFC 7208): may this client send mail for this domain? Evaluated by pyspf, whose DNS
lookups go through our resolver (it asks a module-level function, set here once; the resolver
for the current thread is in a context variable, so lookups never leave for another server)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import spf as pyspf

from core.resolver import DnsUnavailable, NoSuchDomain, Resolver

_resolver: ContextVar[Resolver | None] = ContextVar("spf_resolver", default=None)
_system_lookup = pyspf.DNSLookup


def _lookup(name: str, qtype: str, strict: bool = True, timeout: float = 20) -> list[Any]:
    """pyspf's DNS function, answered by our resolver: [((name, type), data), ...]."""
    resolver = _resolver.get()
    if resolver is None:
        return list(_system_lookup(name, qtype, strict, timeout))
    try:
        records = resolver.answer(name, qtype)
    except NoSuchDomain:
        return []
    except DnsUnavailable as exc:
        raise pyspf.TempError(f"DNS {exc}") from exc
    found: list[Any] = []
    for rdata in records:
        data: Any
        if qtype in ("A", "AAAA"):
            data = rdata.address  # type: ignore[attr-defined]
        elif qtype == "MX":
            data = (rdata.preference, str(rdata.exchange).rstrip("."))  # type: ignore[attr-defined]
        elif qtype == "PTR":
            data = rdata.target.to_text(True)  # type: ignore[attr-defined]
        else:  # TXT, SPF
            data = rdata.strings  # type: ignore[attr-defined]
        found.append(((name, qtype), data))
    return found


pyspf.DNSLookup = _lookup


@contextmanager
def using(resolver: Resolver) -> Iterator[None]:
    token = _resolver.set(resolver)
    try:
        yield
    finally:
        _resolver.reset(token)


@dataclass(frozen=True)
class SpfResult:
    result: str  # pass, fail, softfail, neutral, none, permerror, temperror
    domain: str  # the domain checked: MAIL FROM's, or HELO's for the null sender
    explanation: str = ""


def check(ip: str, mail_from: str, helo: str, resolver: Resolver) -> SpfResult:
    """The SPF result for a client at `ip` that said `helo` and gave `mail_from`."""
    domain = mail_from.rpartition("@")[2] if "@" in mail_from else helo
    if not ip or not domain:
        return SpfResult("none", domain.lower(), "no client address or domain to check")
    with using(resolver):
        try:
            result, explanation = pyspf.check2(
                i=ip, s=mail_from or f"postmaster@{helo}", h=helo or domain, timeout=20
            )
        except Exception as exc:  # pyspf raises on malformed input
            return SpfResult("permerror", domain.lower(), str(exc)[:200])
    return SpfResult(str(result), domain.lower(), str(explanation)[:300])
