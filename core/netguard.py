"""Only servers on the internet: what a company types (an SMTP host, a webhook URL) must not
reach inside our network.

Without this, a connection test would probe loopback, private networks and cloud metadata
services from our side, and its answers would tell open ports from closed ones. An operator
can allow private hosts (`RECRUITMAIL_ALLOW_PRIVATE_HOSTS`, on in development and tests, where
servers are local).

A name is resolved once, and the connection goes to an address that was checked: a resolver
that answers a public address to the check and `127.0.0.1` to the connect (DNS rebinding)
cannot reach loopback. TLS still verifies the certificate against the name, not the address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable

# Cloud metadata services, named even though the rules below already refuse them.
_METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}

# (host, port) -> addresses. Tests install one that changes its answer between calls.
Resolver = Callable[[str, int], Awaitable[list[str]]]


class InternalAddress(Exception):
    """The host resolves to an address that is not on the public internet."""


# IPv6 prefixes that carry an IPv4 address a gateway or the host itself turns the connection
# toward: NAT64 (RFC 6052, the well-known and local-use prefixes), 6to4 (RFC 3056), and the
# deprecated IPv4-compatible addresses (::a.b.c.d). Their embedded address must be public too.
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_SIX_TO_FOUR = ipaddress.ip_network("2002::/16")
_COMPATIBLE = ipaddress.ip_network("::/96")


def _embedded(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address leads to, when it carries one."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if any(ip in net for net in _NAT64) or ip in _COMPATIBLE:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _SIX_TO_FOUR:
        return ip.sixtofour
    return None


def is_public(address: str) -> bool:
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded(ip)
        if embedded is not None:
            if ip in _COMPATIBLE and int(ip) <= 1:
                return False  # :: and ::1
            return is_public(str(embedded))
    return ip.is_global and not ip.is_multicast and ip not in _METADATA


async def system_resolver(host: str, port: int) -> list[str]:
    try:  # an address already (a relay on 127.0.0.1): no lookup, and no hop to a thread
        ipaddress.ip_address(host)
        return [host]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: list[str] = []
    for info in infos:
        address = str(info[4][0])
        if address not in found:
            found.append(address)
    return found


_resolver: Resolver = system_resolver


def use_resolver(resolver: Resolver) -> Resolver:
    """Install another resolver (tests); returns the one it replaces."""
    global _resolver
    previous, _resolver = _resolver, resolver
    return previous


async def resolve(host: str, port: int, timeout: float, *, allow_private: bool) -> list[str]:
    """The host's addresses, resolved once. Unless private hosts are allowed, InternalAddress
    if any of them is not public (a name that resolves to both is refused too)."""
    addresses = await asyncio.wait_for(_resolver(host, port), timeout)
    if not addresses:
        raise OSError(f"{host} has no address")
    if not allow_private:
        if any(not is_public(a) for a in addresses):
            # Which address is not said: the answer would tell anyone what an internal name
            # resolves to inside our network.
            raise InternalAddress(
                f"{host} resolves to an internal address (loopback, private, link-local or a "
                "metadata service). Only servers on the internet can be used."
            )
    return addresses


async def connect(addresses: list[str], port: int, timeout: float) -> socket.socket:
    """A TCP connection to the first of `addresses` (already checked) that answers."""
    loop = asyncio.get_running_loop()
    last: OSError | None = None
    for address in addresses:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, (address, port)), timeout)
        except (OSError, TimeoutError) as exc:
            sock.close()
            last = exc if isinstance(exc, OSError) else TimeoutError(f"{address}:{port}")
            continue
        return sock
    raise last or OSError(f"no address to connect to on port {port}")


async def open_socket(
    host: str, port: int, timeout: float, *, allow_private: bool
) -> socket.socket:
    """Resolve once, check, and connect to a checked address."""
    addresses = await resolve(host, port, timeout, allow_private=allow_private)
    return await connect(addresses, port, timeout)


async def public_addresses(host: str, port: int, timeout: float) -> list[str]:
    """The host's addresses; InternalAddress if any of them is not public."""
    return await resolve(host, port, timeout, allow_private=False)
