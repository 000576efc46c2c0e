"""One resolver for every DNS lookup: the round trip's mail exchangers, and the SPF, DKIM and
DMARC records of received mail and of a company's sending domain.

`RECRUITMAIL_DNS_NAMESERVERS` (`host:port`, comma-separated) points it at given servers, a real
DNS server on loopback in development and tests; empty, the system's resolver configuration.
Answers are plain values; a missing name or record is an empty answer, and a server that fails
or does not answer raises `DnsUnavailable` (SPF and DMARC then say "temperror").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver


class DnsUnavailable(Exception):
    """The DNS did not answer (a timeout, SERVFAIL): try again later."""


class NoSuchDomain(Exception):
    """The name does not exist (NXDOMAIN)."""


def parse_nameservers(value: str) -> list[tuple[str, int]]:
    """`127.0.0.1:5353,[::1]:53` as [(host, port)]; a missing port is 53."""
    found = []
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            port = rest.removeprefix(":")
        else:
            host, _, port = item.rpartition(":") if item.count(":") == 1 else (item, "", "")
        if not host or (port and not port.isdigit()):
            raise ValueError(
                f"RECRUITMAIL_DNS_NAMESERVERS must look like 127.0.0.1:5353,[::1]:53 (got {item!r})"
            )
        found.append((host, int(port or 53)))
    return found


def _configure(
    resolver: dns.resolver.BaseResolver, servers: list[tuple[str, int]], timeout: float
) -> None:
    if servers:
        resolver.nameservers = [dns.nameserver.Do53Nameserver(host, port) for host, port in servers]
    resolver.lifetime = timeout
    resolver.timeout = timeout


@dataclass(frozen=True)
class Resolver:
    """Lookups with the configured servers and time limit. Sync for the activities' threads
    (and the libraries that take a lookup function), async for the event loop."""

    servers: tuple[tuple[str, int], ...] = ()
    timeout: float = 5.0

    def _sync(self) -> dns.resolver.Resolver:
        resolver = dns.resolver.Resolver(configure=not self.servers)
        _configure(resolver, list(self.servers), self.timeout)
        return resolver

    def _async(self) -> dns.asyncresolver.Resolver:
        resolver = dns.asyncresolver.Resolver(configure=not self.servers)
        _configure(resolver, list(self.servers), self.timeout)
        return resolver

    def answer(self, name: str, kind: str) -> list[dns.rdata.Rdata]:
        """The records of `kind` at `name`; [] when there are none. NoSuchDomain when the name
        does not exist; DnsUnavailable when the DNS did not answer."""
        try:
            return list(self._sync().resolve(name, kind, search=False))
        except dns.resolver.NXDOMAIN as exc:
            raise NoSuchDomain(name) from exc
        except dns.resolver.NoAnswer:
            return []
        except (dns.exception.DNSException, OSError) as exc:
            raise DnsUnavailable(f"{name} {kind}: {type(exc).__name__}") from exc

    async def answer_async(self, name: str, kind: str) -> list[dns.rdata.Rdata]:
        try:
            return list(await self._async().resolve(name, kind, search=False))
        except dns.resolver.NXDOMAIN as exc:
            raise NoSuchDomain(name) from exc
        except dns.resolver.NoAnswer:
            return []
        except (dns.exception.DNSException, OSError) as exc:
            raise DnsUnavailable(f"{name} {kind}: {type(exc).__name__}") from exc

    async def mx_async(self, name: str) -> list[tuple[int, str]]:
        """(preference, host) of each MX record, best first."""
        return _exchangers(await self.answer_async(name, "MX"))

    def mx(self, name: str) -> list[tuple[int, str]]:
        return _exchangers(self.answer(name, "MX"))

    def txt(self, name: str) -> list[str]:
        """The TXT records at `name`, each its strings joined; [] when none or no such name."""
        try:
            records = self.answer(name, "TXT")
        except NoSuchDomain:
            return []
        strings: list[Any] = [r.strings for r in records]  # type: ignore[attr-defined]
        return [b"".join(parts).decode("utf-8", "replace") for parts in strings]


def _exchangers(records: list[Any]) -> list[tuple[int, str]]:
    return sorted((int(r.preference), str(r.exchange).rstrip(".")) for r in records)
