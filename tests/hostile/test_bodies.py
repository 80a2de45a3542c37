"""What a stranger may put in bodies and credentials: JSON bombs, compression, doubled names and keys, CORS.

JSON bombs (deep nesting, huge numbers, non-numbers, lone surrogates) are `400`; an object with a
name twice is `400` (parsers disagree on which value wins); a compressed body is `415`, never
inflated (a 1 MB gzip of spaces is 1 GiB of work, and an invalid one was a `500`); two
`Authorization` headers are `401`; hostile credentials are `401` and never echoed; a preflight
never reflects an `Origin` nor grants credentials or `Authorization`.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import zlib

import orjson

from tests.hostile.harness import (
    API_KEY,
    CAMPAIGN,
    Answer,
    Tally,
    click_path,
    exchange,
    fetch,
    request,
    session,
)
from tests.support.service import Service

SERVER_CLICK = "/api/v1/campaigns/click"
JSON = {"Content-Type": "application/json"}
AUTH = {**JSON, "Authorization": f"Bearer {API_KEY}"}
GOOD_CLICK = orjson.dumps({"campaignId": CAMPAIGN, "placement": "header_banner"})


def _deep(depth: int, open_: bytes = b"[", close: bytes = b"]") -> bytes:
    return open_ * depth + b"1" + close * depth


BOMBS: dict[str, bytes] = {
    "nested arrays 1,100": _deep(1_100),
    "nested arrays 30,000": _deep(30_000),
    "nested objects 1,100": _deep(1_100, b'{"a":', b"}"),
    "nested objects 10,000": _deep(10_000, b'{"a":', b"}"),
    "an integer of 5,000 digits": b'{"user_id": "u", "x": ' + b"9" * 5_000 + b"}",
    "an integer of 60,000 digits": b'{"user_id": ' + b"9" * 60_000 + b"}",
    "2**64": b'{"user_id": 18446744073709551616, "campaignId": 18446744073709551616}',
    "1e999999": b'{"user_id": 1e999999}',
    "-1e-999999": b'{"user_id": -1e-999999, "campaignId": -1e-999999}',
    "NaN": b'{"user_id": NaN}',
    "Infinity": b'{"user_id": "u", "x": Infinity}',
    "a lone surrogate": b'{"user_id": "\\ud800"}',
    "a byte-order mark": b'\xef\xbb\xbf{"user_id": "u"}',
    "UTF-16": '{"user_id": "u"}'.encode("utf-16"),
    "trailing garbage": b'{"user_id": "u"} {"user_id": "v"}',
    "a comment": b'{"user_id": "u" /* x */}',
    "a trailing comma": b'{"user_id": "u",}',
}
DUPLICATES: dict[str, bytes] = {
    "beacon user_id twice": b'{"user_id": "attacker", "user_id": "victim"}',
    "beacon, nested name twice": b'{"user_id": "u", "x": {"a": 1, "a": 2}}',
    "server click campaignId twice": b'{"campaignId": 99, "campaignId": 1, "placement": "header_banner"}',
    "server click placement twice": b'{"campaignId": 1, "placement": "x", "placement": "header_banner"}',
}


async def test_json_bombs_are_refused(service: Service) -> None:
    tally = Tally("JSON bombs on beacons and server clicks")
    beacon = "/v1/beacon/click/" + click_path(service).removeprefix("/ck/")
    for name, body in BOMBS.items():
        for path, headers in ((beacon, JSON), (SERVER_CLICK, AUTH)):
            answer = await exchange(service.port, request("POST", path, headers=headers, body=body))
            tally.count(answer, f"{path[:12]} {name}", expected=(400, 413, 422))
    tally.report()


async def test_a_name_twice_is_refused_not_guessed(service: Service) -> None:
    """Before: orjson kept the last value, so `campaignId` 99 then 1 recorded a click for campaign 1."""
    tally = Tally("duplicate JSON names")
    beacon = "/v1/beacon/click/" + click_path(service).removeprefix("/ck/")
    for name, body in DUPLICATES.items():
        path, headers = (beacon, JSON) if name.startswith("beacon") else (SERVER_CLICK, AUTH)
        answer = tally.count(
            await exchange(service.port, request("POST", path, headers=headers, body=body)), name, (400,)
        )
        assert b"duplicate" in answer.body, answer.body
    tally.report()


def gzip_bomb(mib: int) -> bytes:
    """`mib` MiB of spaces, gzipped (about 1,000 to 1)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b" " * (1 << 20)
    return b"".join(packer.compress(block) for _ in range(mib)) + packer.flush()


def _encoded(path: str, headers: dict[str, str], encoding: str, body: bytes) -> bytes:
    return request("POST", path, headers={**headers, "Content-Encoding": encoding}, body=body)


async def test_compressed_bodies_are_refused_not_inflated(service: Service) -> None:
    """Before: an invalid gzip body was a 500; a valid one was inflated (then recorded, or inflated in full)."""
    tally = Tally("compressed bodies")
    beacon = "/v1/beacon/click/" + click_path(service).removeprefix("/ck/")
    valid_beacon = zlib.compress(b'{"user_id": "u"}')
    bodies = {
        "gzip, not gzip": ("gzip", b'{"user_id": "u"}'),
        "deflate, valid": ("deflate", valid_beacon),
        "gzip, valid": ("gzip", _gzip(b'{"user_id": "u"}')),
        "br": ("br", b"\x0b\x02\x80{}\x03"),
        "gzip, gzip": ("gzip, gzip", _gzip(_gzip(b"{}"))),
        "GZIP": ("GZIP", _gzip(b"{}")),
        "identity, gzip": ("identity, gzip", _gzip(b"{}")),
        "x-unknown": ("x-unknown", b"{}"),
    }
    for name, (encoding, body) in bodies.items():
        for path, headers in ((beacon, JSON), (SERVER_CLICK, AUTH), ("/v1/insert", JSON)):
            port = service.admin_port if path == "/v1/insert" else service.port
            answer = await exchange(port, _encoded(path, headers, encoding, body))
            tally.count(answer, f"{path[:12]} {name}", expected=(415,))
    tally.report()


def _gzip(data: bytes) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    return packer.compress(data) + packer.flush()


async def test_a_gzip_bomb_does_not_stall_the_server(service: Service) -> None:
    """Before: four 256 KB bombs (256 MiB each) kept the loop inflating; /healthz waited seconds."""
    tally = Tally("gzip bombs, health answered meanwhile")
    bomb = gzip_bomb(256)
    payload = _encoded(SERVER_CLICK, AUTH, "gzip", bomb)
    bombs = [asyncio.create_task(exchange(service.port, payload, limit_s=30)) for _ in range(4)]
    worst = 0.0
    async with session() as client:
        while not all(b.done() for b in bombs):
            started = time.monotonic()
            tally.count(await fetch(client, "GET", f"{service.url}/healthz"), "/healthz", expected=(200,))
            worst = max(worst, time.monotonic() - started)
            await asyncio.sleep(0.02)
    for bomb_answer in await asyncio.gather(*bombs):
        tally.count(bomb_answer, "bomb", expected=(413, 415))
    tally.report()
    assert worst < 1.0, worst


AUTHORIZATIONS: dict[str, bytes] = {
    "Latin-1": b"Bearer cbk_caf\xe9",
    "UTF-8": "Bearer cbk_café".encode(),
    "a surrogate's bytes": b"Bearer \xed\xa0\x80",
    "invalid UTF-8": b"Bearer \xff\xfe",
    "8,000 bytes": b"Bearer " + b"A" * 8_000,
    "the key's SHA-256": b"Bearer " + hashlib.sha256(API_KEY.encode()).hexdigest().encode(),
    "the key with a NUL": b"Bearer " + API_KEY.encode() + b"\x00",
    "the key, a tab and more": b"Bearer " + API_KEY.encode() + b"\tx",
    "the key twice": b"Bearer " + API_KEY.encode() + b" " + API_KEY.encode(),
    "Basic": b"Basic " + API_KEY.encode(),
    "no scheme": API_KEY.encode(),
}


async def test_forged_and_odd_keys_are_refused_and_never_echoed(service: Service) -> None:
    tally = Tally("forged, huge and non-ASCII API keys")
    for name, value in AUTHORIZATIONS.items():
        payload = request("POST", SERVER_CLICK, headers={**JSON, "Authorization": value}, body=GOOD_CLICK)
        answer = tally.count(await exchange(service.port, payload), name, expected=(400, 401))
        assert value[7:] not in answer.raw or len(value) < 10
    tally.report()


async def test_two_authorization_headers_are_refused(service: Service) -> None:
    """Before: the first one counted, whatever a proxy in front had acted on (the last, often)."""
    tally = Tally("two Authorization headers")
    good, bad = f"Bearer {API_KEY}".encode(), b"Bearer cbk_not-a-key"
    for first, second in ((good, bad), (bad, good), (good, good)):
        head = f"POST {SERVER_CLICK} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
        payload = head.encode() + b"Authorization: " + first + b"\r\nAuthorization: " + second + b"\r\n"
        payload += f"Content-Length: {len(GOOD_CLICK)}\r\n\r\n".encode() + GOOD_CLICK
        tally.count(await exchange(service.port, payload), f"{first[:12]!r}, {second[:12]!r}", expected=(401,))
    one = await exchange(service.port, request("POST", SERVER_CLICK, headers=AUTH, body=GOOD_CLICK))
    assert one.status == 200
    tally.report()


ORIGINS = [
    "https://evil.example",
    "null",
    "https://shop.example.evil.example",
    "https://evil.example\\@shop.example",
    "file://",
    "https://" + "a" * 4_000 + ".example",
    "https://evil.example, https://shop.example",
]


async def test_preflights_never_reflect_an_origin_nor_grant_credentials(service: Service) -> None:
    tally = Tally("CORS preflights with hostile Origins")
    token = click_path(service).removeprefix("/ck/")
    targets = {f"/v1/beacon/click/{token}": (204,), "/v1/beacon/impression/x": (204,), SERVER_CLICK: (404, 405)}
    for path, expected in targets.items():
        for origin in ORIGINS:
            headers = {
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, x-evil, content-type",
            }
            answer = tally.count(
                await exchange(service.port, request("OPTIONS", path, headers=headers)), origin, expected
            )
            _no_grant(answer)
    beacon = await exchange(
        service.port, request("POST", f"/v1/beacon/click/{token}", headers={**JSON, "Origin": ORIGINS[0]}, body=b"{}")
    )
    _no_grant(beacon)
    tally.report()


def _no_grant(answer: Answer) -> None:
    assert answer.header("Access-Control-Allow-Origin") in (None, "*"), answer.head
    assert answer.header("Access-Control-Allow-Credentials") is None, answer.head
    allowed = (answer.header("Access-Control-Allow-Headers") or "").lower()
    assert "authorization" not in allowed and "x-evil" not in allowed, answer.head


async def test_an_unknown_expect_is_refused_without_echo(service: Service) -> None:
    """Before: `417` with the body `Unknown Expect: <the sender's header>`."""
    tally = Tally("Expect headers")
    for value in ("s3cr3t-expectation", "100-continue, s3cr3t", "<script>s3cr3t</script>"):
        payload = request("POST", SERVER_CLICK, headers={**AUTH, "Expect": value}, body=GOOD_CLICK)
        answer = tally.count(await exchange(service.port, payload), value, expected=(417,))
        assert b"s3cr3t" not in answer.raw and answer.body == b"417 Expectation Failed\n", answer.raw
    tally.report()
