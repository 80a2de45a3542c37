"""Refuse to call bidders on internal addresses (SSRF guard).

The check runs where the connection is made: a resolver that vets every
address a name resolves to (so DNS rebinding cannot slip a private address in
after a first public answer), plus a check of IP literals, which aiohttp never
hands to a resolver.
"""

from __future__ import annotations

import ipaddress
import socket

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from clickbus.errors import AddressRefused

# Ranges `is_global` misses on some Python versions, named here so the rule is explicit.
_EXTRA_BLOCKED = tuple(
    ipaddress.ip_network(n) for n in ("100.64.0.0/10", "169.254.0.0/16", "fd00:ec2::/32", "64:ff9b:1::/48")
)


def refused(host: str) -> bool:
    """True when the IP address `host` is not a public unicast address."""
    address = ipaddress.ip_address(host.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_multicast or not address.is_global:
        return True
    return any(address in net for net in _EXTRA_BLOCKED if net.version == address.version)


def check_literal(host: str) -> None:
    """Raise `AddressRefused` when `host` is an IP literal in a refused range (names pass)."""
    try:
        bad = refused(host.strip("[]"))
    except ValueError:
        return
    if bad:
        raise AddressRefused(f"bidder address {host} is not public")


class GuardedResolver(AbstractResolver):
    """Resolves like aiohttp's default resolver, then refuses internal addresses."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        bad = [r["host"] for r in results if refused(r["host"])]
        if bad:
            raise AddressRefused(f"bidder host {host} resolves to a non-public address {bad[0]}")
        return results

    async def close(self) -> None:
        await self._inner.close()
