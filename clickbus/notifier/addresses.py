"""Refuse to call bidders on internal addresses (SSRF guard).

The check runs where the connection is made: a resolver that vets every
address a name resolves to (so DNS rebinding cannot slip a private address in
after a first public answer), plus a check of IP literals, which aiohttp never
hands to a resolver. A host whose last label is a number is an IPv4 literal in
whatever form browsers and `inet_aton` read (`2130706433`, `127.1`, `0177.0.0.1`,
`0x7f.1`): it is judged as the address it stands for, here, not left to the
resolver, and one that stands for no address is refused too.
"""

from __future__ import annotations

import ipaddress
import re
import socket

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from clickbus.errors import AddressRefused

# Ranges `is_global` misses on some Python versions, named here so the rule is explicit: shared and
# link-local IPv4, cloud metadata over IPv6, NAT64 (which reaches any IPv4 address, internal ones
# too), 6to4 and Teredo (which embed one), IPv4-compatible IPv6, benchmarking and reserved IPv4.
_EXTRA_BLOCKED = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "100.64.0.0/10",
        "169.254.0.0/16",
        "192.0.0.0/24",
        "198.18.0.0/15",
        "240.0.0.0/4",
        "fd00:ec2::/32",
        "64:ff9b::/96",
        "64:ff9b:1::/48",
        "2002::/16",
        "2001::/32",
        "::/96",
    )
)
# WHATWG's "ends in a number": the last non-empty label is decimal digits or 0x-hex.
_NUMERIC_LABEL = re.compile(r"[0-9]+|0[xX][0-9a-fA-F]*")
_IPV4_CHARS = re.compile(r"[0-9a-fA-FxX.]+")


def ends_in_number(host: str) -> bool:
    """True when `host` can only be an IPv4 address (valid or not), as a browser reads it."""
    return bool(_NUMERIC_LABEL.fullmatch(host.removesuffix(".").split(".")[-1]))


def numeric_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The address a host ending in a number stands for, read as `inet_aton` does; None when it stands for none."""
    if not _IPV4_CHARS.fullmatch(host):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host.removesuffix(".")))
    except OSError:
        return None


def refused(host: str) -> bool:
    """True when the IP literal `host` (IPv4 in any form) is not a public unicast address; ValueError for names."""
    text = host.split("%", 1)[0]
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(text)
    except ValueError:
        if not ends_in_number(text):
            raise
        numeric = numeric_ipv4(text)
        if numeric is None:  # a browser refuses it; so do we, rather than ask a resolver
            return True
        address = numeric
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
