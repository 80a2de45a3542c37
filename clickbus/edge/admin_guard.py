"""What the internal listener answers to a browser: only its own names, and never inside another site.

Whoever reaches the internal listener can mint tokens, and its console is a page a browser
opens. A page on any other site must not turn the operator's browser against it:

- **DNS rebinding.** A site can make its own name resolve to 127.0.0.1 and then talk to the
  listener as same-origin. Its requests still carry that name in `Host`, so a `Host` that is not
  the listener's own address, `localhost` or a loopback address (when it listens on loopback),
  or a name in `edge.admin_hosts`, gets `421` on every route, before any handler runs.
- **Framing, leaks, foreign scripts:** every answer says `Content-Security-Policy: default-src
  'self'`, `X-Frame-Options: DENY`, `Referrer-Policy: no-referrer` and `nosniff`.
- **Cross-origin writes:** no route answers CORS, and insertion reads only `application/json`
  bodies (`clickbus.edge.body`), a type a cross-origin form or `fetch` cannot send without a
  preflight that nothing here grants.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Collection
from http import HTTPStatus

from aiohttp import hdrs, web

from clickbus.edge.appkeys import CONFIG

LOCALHOST = "localhost"
MISDIRECTED = HTTPStatus.MISDIRECTED_REQUEST
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def host_name(host: str) -> str | None:
    """The name or address in a `Host` value, without its port, lower-cased; None when it is not one."""
    host = host.strip().lower()
    if host.startswith("["):
        name, bracket, rest = host[1:].partition("]")
        if not bracket or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
        return name
    name, colon, port = host.partition(":")
    if colon and not port.isdigit():
        return None
    return name or None


def _address(text: str) -> Address | None:
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def host_allowed(host: str | None, local: str | None, names: Collection[str]) -> bool:
    """Whether a request whose `Host` is `host`, arriving at local address `local`, is for this listener."""
    name = host_name(host) if host is not None else None
    if name is None:
        return False
    if name in names:
        return True
    own = _address(local) if local is not None else None
    if own is None:
        return False
    if own.is_loopback and name == LOCALHOST:
        return True
    asked = _address(name)
    # the address the connection arrived at; on loopback, any loopback address names the same machine
    return asked is not None and (asked == own or (own.is_loopback and asked.is_loopback))


def _local_address(request: web.Request) -> str | None:
    transport = request.transport
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    return sockname[0] if isinstance(sockname, tuple) and sockname else None


@web.middleware
async def known_hosts_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer `421` to a request whose `Host` is not one of the listener's own names (DNS rebinding)."""
    hosts = request.headers.getall(hdrs.HOST, [])
    host = hosts[0] if len(hosts) == 1 else None
    if not host_allowed(host, _local_address(request), request.app[CONFIG].edge.admin_hosts):
        return web.Response(status=MISDIRECTED, text=f"{MISDIRECTED.value} {MISDIRECTED.phrase}\n")
    return await handler(request)


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare` signal: every answer of the internal listener forbids framing and foreign content."""
    response.headers.update(SECURITY_HEADERS)
