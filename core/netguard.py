"""Only servers on the internet: a company's SMTP settings must not reach inside our network.

A settings admin types the host and port of a connection; without this, the connection test
would probe loopback, private networks and cloud metadata services from our side, and its
answers would tell open ports from closed ones. An operator can allow private hosts
(`RECRUITMAIL_ALLOW_PRIVATE_HOSTS`, on in development and tests, where servers are local).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

# Cloud metadata services, named even though the rules below already refuse them.
_METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}


class InternalAddress(Exception):
    """The host resolves to an address that is not on the public internet."""


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast and ip not in _METADATA


async def public_addresses(host: str, port: int, timeout: float) -> list[str]:
    """The host's addresses; InternalAddress if any of them is not public (a name that
    resolves to both is refused too: the client might connect to either)."""
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout)
    addresses = sorted({str(info[4][0]) for info in infos})
    internal = [a for a in addresses if not is_public(a)]
    if internal:
        raise InternalAddress(
            f"{host} resolves to {internal[0]}, an internal address (loopback, private, "
            "link-local or a metadata service). Only mail servers on the internet can be used."
        )
    return addresses
