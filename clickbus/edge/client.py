"""What the edge records about the client that sent a request.

Behind proxies (`edge.trust_forwarded`) the client's address is the rightmost untrusted hop of
`X-Forwarded-For`, as nginx's `real_ip_recursive` and Werkzeug's `ProxyFix` take it: each proxy
appends the address it was connected from, so only the entries our own proxies appended can be
believed, and everything left of them is whatever the client chose to send. With
`edge.trusted_proxies` empty there is exactly one trusted hop, the peer; otherwise the peer and
each entry are trusted while they fall in one of those networks. A malformed entry ends the
walk at the last address a trusted proxy vouched for.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import NamedTuple

from aiohttp import hdrs, web

from clickbus.edge.appkeys import ADDRESS_SECRET, CONFIG
from clickbus.records import address_key, device_key, truncate_ip
from clickbus.settings.values import Network

MAX_HEADER_CHARS = 2048


class Client(NamedTuple):
    """The client's truncated address, user agent, referer and device key, and a keyed hash of its full address.

    A NamedTuple rather than a frozen dataclass, as `events.Event`: one is built per request.
    """

    ip: str
    user_agent: str
    referer: str
    device: str
    key: str = ""


def _parsed(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address, proxies: Sequence[Network]) -> bool:
    return any(address in network for network in proxies)


def client_address(peer: str | None, forwarded: Sequence[str], proxies: Sequence[Network]) -> str:
    """The client's address from the peer and the `X-Forwarded-For` values, right to left past `proxies`."""
    hops = [hop for value in forwarded for hop in value.split(",")]
    current = _parsed(peer or "")
    if current is None or (proxies and not _trusted(current, proxies)):
        return peer or ""
    for hop in reversed(hops):
        previous = _parsed(hop)
        if previous is None:
            break
        current = previous
        if not proxies or not _trusted(current, proxies):
            break
    return str(current)


def client_of(request: web.Request, *, trust_forwarded: bool, app: web.Application | None = None) -> Client:
    """Describe the client; `X-Forwarded-For` is believed only past `edge.trusted_proxies` (see the module).

    `app` is the request's application, for requests the router did not see (see `clickbus.edge.thin`).
    """
    if app is None:
        app = request.app
    address = request.remote
    if trust_forwarded:
        forwarded = request.headers.getall(hdrs.X_FORWARDED_FOR, [])
        address = client_address(address, forwarded, app[CONFIG].edge.trusted_proxies)
    user_agent = request.headers.get(hdrs.USER_AGENT, "")[:MAX_HEADER_CHARS]
    return Client(
        truncate_ip(address),
        user_agent,
        request.headers.get(hdrs.REFERER, "")[:MAX_HEADER_CHARS],
        device_key(user_agent),
        address_key(app[ADDRESS_SECRET], address),
    )
