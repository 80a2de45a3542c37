"""Every header with bytes that are not UTF-8 (or are controls), on every route, over raw sockets.

Bytes a browser or a proxy may pass on (Latin-1, broken UTF-8, lone surrogates' encodings) in a
header the edge only records must not cost the click: the route answers as it does for any other
request. Control bytes may be refused (`400`). Nothing may answer `5xx` or hang.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson

from tests.hostile.harness import API_KEY, CAMPAIGN, Tally, click_path, exchange, request, run_all
from tests.support.service import Service

NOT_UTF8 = [b"caf\xe9", b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"\xf0\x9f\x98", b"\x80x", b"\xc0\xaf"]
CONTROLS = [b"a\x00b", b"a\x01b", b"a\x7fb", b"a\x1b[31mb"]
RECORDED = ["User-Agent", "Referer", "X-Forwarded-For", "Accept-Language", "Cookie", "Origin", "X-Clickbus-Test"]
STRUCTURAL = {"Authorization": (200, 202, 302, 401), "Content-Type": (200, 202, 302, 415), "Host": (200, 202, 302, 400)}


def routes(service: Service) -> dict[str, tuple[str, str, bytes, int]]:
    """Route name -> (method, path, body, status when all is well)."""
    token = click_path(service).removeprefix("/ck/")
    server = orjson.dumps({"campaignId": CAMPAIGN, "placement": "header_banner"})
    beacon = b'{"user_id": "u"}'
    return {
        "click": ("GET", f"/ck/{token}", b"", 302),
        "pixel": ("GET", f"/i/{token}", b"", 200),
        "beacon click": ("POST", f"/v1/beacon/click/{token}", beacon, 202),
        "beacon impression": ("POST", f"/v1/beacon/impression/{token}", beacon, 202),
        "server click": ("POST", "/api/v1/campaigns/click", server, 200),
        "healthz": ("GET", "/healthz", b"", 200),
        "readyz": ("GET", "/readyz", b"", 200),
    }


DEFAULTS = {
    "Authorization": f"Bearer {API_KEY}",
    "Content-Type": "application/json",
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0",
}


def with_header(method: str, path: str, body: bytes, name: str, value: bytes) -> bytes:
    """A request with one header set to `value` (replacing the default of that name)."""
    return request(method, path, headers={**DEFAULTS, name: value}, body=body)


async def test_headers_with_invalid_bytes_on_every_route(service: Service) -> None:
    tallies = {kind: Tally(f"header bytes: {kind}") for kind in ("not UTF-8", "controls")}

    def attempt(route: str, name: str, value: bytes, kind: str) -> Callable[[], Awaitable[None]]:
        method, path, body, ok = routes_of[route]
        expected = STRUCTURAL.get(name, (ok,)) if kind == "not UTF-8" else (ok, 400)

        async def go() -> None:
            answer = await exchange(service.port, with_header(method, path, body, name, value))
            tallies[kind].count(answer, f"{route} {name}: {value!r}", expected=expected)

        return go

    routes_of = routes(service)
    values = [(v, "not UTF-8") for v in NOT_UTF8] + [(v, "controls") for v in CONTROLS]
    await run_all(
        attempt(route, name, b"x " + value, kind)
        for route in routes_of
        for name in [*RECORDED, *STRUCTURAL]
        for value, kind in values
    )
    for tally in tallies.values():
        tally.report()
