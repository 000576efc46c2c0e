"""A real DNS server on loopback (dnslib, UDP and TCP), answering from a zone the test edits:
MX, A, AAAA, TXT records by name, and names that do not exist (NXDOMAIN) or fail (SERVFAIL).
The resolver under test talks to it through RECRUITMAIL_DNS_NAMESERVERS."""

from __future__ import annotations

import threading
from collections import defaultdict

from dnslib import AAAA, MX, QTYPE, RCODE, RR, TXT, A
from dnslib.server import BaseResolver, DNSLogger, DNSServer

from tests.fakes.net import free_port


class Zone(BaseResolver):
    def __init__(self) -> None:
        self.records: dict[tuple[str, str], list] = defaultdict(list)
        self.failing: set[str] = set()
        self.queries: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def resolve(self, request, handler):
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        kind = QTYPE[request.q.qtype]
        with self.lock:
            self.queries.append((name, kind))
            if name in self.failing:
                reply.header.rcode = RCODE.SERVFAIL
                return reply
            exists = any(key[0] == name for key in self.records)
            for data in self.records.get((name, kind), []):
                reply.add_answer(RR(request.q.qname, request.q.qtype, rdata=data, ttl=60))
        if not exists:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


class DnsServer:
    """`with DnsServer() as dns:` then `dns.mx("acme.example", "mx.acme.example")`, ..."""

    def __init__(self) -> None:
        self.zone = Zone()
        self.port = free_port()
        quiet = DNSLogger(logf=lambda line: None)
        self._udp = DNSServer(self.zone, address="127.0.0.1", port=self.port, logger=quiet)
        self._tcp = DNSServer(
            self.zone, address="127.0.0.1", port=self.port, tcp=True, logger=quiet
        )

    @property
    def nameservers(self) -> str:
        """The RECRUITMAIL_DNS_NAMESERVERS value naming this server."""
        return f"127.0.0.1:{self.port}"

    def _add(self, name: str, kind: str, data) -> None:
        with self.zone.lock:
            self.zone.records[(name.lower().rstrip("."), kind)].append(data)

    def mx(self, domain: str, host: str, preference: int = 10) -> None:
        self._add(domain, "MX", MX(host, preference))

    def a(self, name: str, address: str) -> None:
        self._add(name, "A", A(address))

    def aaaa(self, name: str, address: str) -> None:
        self._add(name, "AAAA", AAAA(address))

    def txt(self, name: str, text: str) -> None:
        # Long records are split into 255-byte strings, as a zone file does.
        data = text.encode()
        self._add(name, "TXT", TXT([data[i : i + 255] for i in range(0, len(data), 255)]))

    def fail(self, name: str) -> None:
        with self.zone.lock:
            self.zone.failing.add(name.lower())

    def clear(self, name: str, kind: str | None = None) -> None:
        with self.zone.lock:
            for key in [k for k in self.zone.records if k[0] == name.lower()]:
                if kind is None or key[1] == kind:
                    del self.zone.records[key]

    def __enter__(self) -> DnsServer:
        self._udp.start_thread()
        self._tcp.start_thread()
        return self

    def __exit__(self, *exc) -> None:
        self._udp.stop()
        self._tcp.stop()
