"""What the edge records about the client that sent a request."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import hdrs, web

from clickbus.edge.appkeys import ADDRESS_SECRET
from clickbus.records import address_key, device_key, truncate_ip

MAX_HEADER_CHARS = 2048


@dataclass(frozen=True, slots=True)
class Client:
    """The client's truncated address, user agent, referer and device key, and a keyed hash of its full address."""

    ip: str
    user_agent: str
    referer: str
    device: str
    key: str = ""


def client_of(request: web.Request, *, trust_forwarded: bool) -> Client:
    """Describe the client; `X-Forwarded-For` is believed only behind a trusted proxy."""
    address = request.remote
    if trust_forwarded and (forwarded := request.headers.get(hdrs.X_FORWARDED_FOR)):
        address = forwarded.split(",", 1)[0].strip()
    user_agent = request.headers.get(hdrs.USER_AGENT, "")[:MAX_HEADER_CHARS]
    return Client(
        ip=truncate_ip(address),
        user_agent=user_agent,
        referer=request.headers.get(hdrs.REFERER, "")[:MAX_HEADER_CHARS],
        device=device_key(user_agent),
        key=address_key(request.app[ADDRESS_SECRET], address),
    )
