"""Strangers on the public listener of a real `clickbus run`: they cannot mint tokens, reach operator routes,
learn the server software, or read their own bytes back in an error (findings 1 and 10 of issue 11).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.hostile.harness import Tally, exchange, request, serving
from tests.support.service import Service

INSERT_KEY = "cbi_hostile-suite-adserver"
MEMBER_KEY = "cbi_hostile-suite-member-13"
SECRET = "cbk_a-secret-the-sender-must-not-see-echoed"
INSERT: dict[str, Any] = {"markup": "<a href='${CLICK_URL}'>x</a>", "landing_url": "https://shop.example/"}
INSERT["auction"] = {"member_id": 14}
FOR_13: dict[str, Any] = {**INSERT, "auction": {"member_id": 13, "redirect_hosts": ["evil.example"]}}
JSON = {"Content-Type": "application/json"}


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    tables = (
        f'[insert_keys.adserver]\nsha256 = "{_digest(INSERT_KEY)}"\n'
        f'[insert_keys.member-13]\nsha256 = "{_digest(MEMBER_KEY)}"\nmembers = [13]\n'
    )
    yield from serving(tmp_path_factory, "listeners", tables=tables)


AUTHORIZATIONS = [
    None,
    "",
    "Bearer",
    "Bearer ",
    "Bearer  ",
    "bearer cbi_guess",
    f"Basic {INSERT_KEY}",
    INSERT_KEY,
    f"Bearer {INSERT_KEY[:-1]}",
    f"Bearer {INSERT_KEY}x",
    f"Bearer {INSERT_KEY.upper()}",
    f"Bearer {_digest(INSERT_KEY)}",
    f"Bearer {MEMBER_KEY}",  # a real key, for another member than the body's
    "Bearer " + "A" * 4000,
    f"Bearer {INSERT_KEY}\tjunk",
]


def _insert_attempt(authorization: str | None, body: dict[str, Any]) -> bytes:
    headers = dict(JSON) if authorization is None else {**JSON, "Authorization": authorization}
    return request("POST", "/v1/insert", headers=headers, body=json.dumps(body).encode())


async def test_strangers_cannot_mint_tokens_on_the_public_listener(service: Service) -> None:
    tally = Tally("mint without an insert key (public listener)")
    minted = []
    for authorization in AUTHORIZATIONS:
        for body in (INSERT, FOR_13):
            answer = tally.count(await exchange(service.port, _insert_attempt(authorization, body)), str(authorization))
            if answer.status == 200:
                minted.append((authorization, body))
            assert answer.status in (401, 403) or (authorization == f"Bearer {MEMBER_KEY}" and answer.status == 200)
    tally.report()
    assert minted == [(f"Bearer {MEMBER_KEY}", FOR_13)]  # a real key, for its own member
    # the ad server's own key works, on the public listener and (without any key) on the internal one
    assert (await exchange(service.port, _insert_attempt(f"Bearer {INSERT_KEY}", INSERT))).status == 200
    assert (await exchange(service.admin_port, _insert_attempt(None, INSERT))).status == 200


REBINDING_HOSTS = ["evil.example", "evil.example:{port}", "localhost.evil.example", "127.0.0.1.nip.io", ""]


async def _minted(service: Service) -> float:
    """Insertions answered with tokens so far, from the service's /metrics."""
    body = (await exchange(service.admin_port, request("GET", "/metrics"))).body.decode()
    found = re.search(r'^clickbus_insertions_total\{outcome="ok"\} (\S+)$', body, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def test_dns_rebinding_cannot_mint_on_the_internal_listener(service: Service) -> None:
    """A page whose name resolves to the internal listener talks to it with its own name in `Host`: refused."""
    tally = Tally("DNS rebinding (internal listener)")
    before = await _minted(service)
    body = json.dumps(INSERT).encode()
    for host in REBINDING_HOSTS:
        headers = {"Host": host.format(port=service.admin_port)}
        insert = request("POST", "/v1/insert", headers={**JSON, **headers}, body=body)
        for payload in (insert, request("GET", "/metrics", headers=headers)):
            answer = tally.count(await exchange(service.admin_port, payload), host)
            assert answer.status == 421 and b"/ck/" not in answer.body, answer.raw[:300]
    tally.report()
    assert await _minted(service) == before
    localhost = {"Host": f"localhost:{service.admin_port}"}
    assert (await exchange(service.admin_port, request("GET", "/metrics", headers=localhost))).status == 200


OPERATOR_PATHS = [
    "/metrics",
    "/metrics/",
    "/METRICS",
    "//metrics",
    "/metrics?format=text",
    "/%6detrics",
    "/./metrics",
    "/ck/../metrics",
    "/openapi.json",
    "/openapi.json/",
    "/OPENAPI.JSON",
    "/v1/../openapi.json",
]


async def test_operator_routes_are_not_on_the_public_listener(service: Service) -> None:
    tally = Tally("operator routes on the public listener")
    for path in OPERATOR_PATHS:
        answer = tally.count(await exchange(service.port, request("GET", path)), path)
        assert answer.status is not None and answer.status >= 400, (path, answer.head)
        assert b"clickbus_" not in answer.body and b"openapi" not in answer.body
    tally.report()
    assert (await exchange(service.admin_port, request("GET", "/metrics"))).status == 200


MALFORMED = [
    b"GET /ck/x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + SECRET.encode() + b"\r\nBad Header\r\n\r\n",
    b"GET /ck/x\x00 HTTP/1.1\r\nAuthorization: Bearer " + SECRET.encode() + b"\r\n\r\n",
    b"BREW /ck/x HTTP/1.1\r\nAuthorization: Bearer " + SECRET.encode() + b"\r\n\r\n",
    b"GET /ck/x HTTP/9.9\r\nAuthorization: Bearer " + SECRET.encode() + b"\r\n\r\n",
    b"GET /ck/x HTTP/1.1\r\nAuthorization: Bearer " + SECRET.encode() + b"\r\nX: " + b"y" * 9000 + b"\r\n\r\n",
    b"GET /" + SECRET.encode() + b"\xff HTTP/1.1\r\nAuthorization: Bearer " + SECRET.encode() + b"\r\n\r\n",
    b"GET /ck/x HTTP/1.1\r\nAuthorization: Bearer " + SECRET.encode() + b"\r\nContent-Length: -1\r\n\r\n",
    b"GET /ck/x HTTP/1.1\r\nAuthorization: Bearer " + SECRET.encode() + b"\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + SECRET.encode(),
]


@pytest.mark.parametrize("listener", ["public", "admin"])
async def test_strangers_learn_nothing_from_answers(service: Service, listener: str) -> None:
    port = service.port if listener == "public" else service.admin_port
    tally = Tally(f"what strangers see ({listener} listener)")
    for payload in MALFORMED:
        answer = tally.count(await exchange(port, payload), repr(payload[:40]))
        assert answer.status == 400, answer.raw[:300]
        assert SECRET.encode() not in answer.raw and b"Bearer" not in answer.raw
        assert answer.body == b"400 Bad Request\n"
    for payload in (request("GET", "/healthz"), request("GET", "/no-such-page"), request("POST", "/healthz")):
        answer = tally.count(await exchange(port, payload), repr(payload[:40]))
        assert answer.status in (200, 404, 405)
    tally.report()
    for payload in [*MALFORMED, request("GET", "/healthz"), request("GET", "/nope")]:
        head = (await exchange(port, payload)).head.lower()
        assert "\r\nserver:" not in head and "python" not in head and "aiohttp" not in head, head
