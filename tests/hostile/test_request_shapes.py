"""Request shapes a stranger may send the public listener: smuggling, header floods, pipelining, old and odd targets.

Smuggling: every ambiguous framing is refused (`400`) and the request hidden behind it is never
answered. Header counts and sizes have limits (`400`/`431`), not a `5xx`. A connection may
pipeline thousands of small requests and gets every answer, in order. HTTP/1.0, absolute-form
targets and `Host` games never change where a click goes, nor the URLs insertion mints.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from urllib.parse import quote

import orjson
import pytest

from tests.hostile.harness import (
    AD,
    API_KEY,
    RAW_HOST,
    Answer,
    Tally,
    click_path,
    connection,
    exchange,
    insert_url,
    inserter,
    request,
)
from tests.support.service import Service

HIDDEN = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
_BEACON = b"POST /v1/beacon/click/{token} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
# name -> the framing (head fields, then the body), each followed by a hidden request
SMUGGLING: dict[str, bytes] = {
    "two different Content-Lengths": b"Content-Length: 2\r\nContent-Length: 40\r\n\r\n{}",
    "two equal Content-Lengths": b"Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
    "Content-Length and chunked": b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "chunked and Content-Length": b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
    "xchunked": b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    "chunked, chunked": b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
    "identity": b"Transfer-Encoding: identity\r\nContent-Length: 2\r\n\r\n{}",
    "space before the colon": b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
    "folded Transfer-Encoding": b"Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
    "Content-Length +2": b"Content-Length: +2\r\n\r\n{}",
    "Content-Length 0x2": b"Content-Length: 0x2\r\n\r\n{}",
    "Content-Length -1": b"Content-Length: -1\r\n\r\n{}",
    "Content-Length 2 2": b"Content-Length: 2 2\r\n\r\n{}",
    "chunk size overflow": b"Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n{}\r\n0\r\n\r\n",
    "chunks ended by bare LF": b"Transfer-Encoding: chunked\r\n\r\n2\n{}\n0\n\n",
    "head line ended by bare LF": b"X-A: b\nContent-Length: 2\r\n\r\n{}",
    "head line ended by bare CR": b"X-A: b\rContent-Length: 2\r\n\r\n{}",
    "obsolete line folding": b"X-A: b\r\n c\r\nContent-Length: 2\r\n\r\n{}",
    "NUL in a header": b"X-A: b\x00c\r\nContent-Length: 2\r\n\r\n{}",
}


async def test_ambiguous_framing_is_refused_and_hides_nothing(service: Service) -> None:
    tally = Tally("request smuggling")
    token = click_path(service).removeprefix("/ck/").encode()
    for name, framing in SMUGGLING.items():
        payload = _BEACON.replace(b"{token}", token) + framing + HIDDEN
        async with connection(service.port) as raw:
            await raw.send(payload)
            answers = await raw.closed(5.0)
        tally.count(answers, name, expected=(400,))
        assert answers.raw.count(b"HTTP/1.") == 1, (name, answers.raw[:600])  # the hidden request got no answer
    tally.report()


def _headers(count: int, size: int) -> Callable[[bytes], bytes]:
    return lambda path: (
        b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n" + (b"X-A: " + b"b" * size + b"\r\n") * count + b"\r\n"
    )


HEADER_FLOODS: dict[str, Callable[[bytes], bytes]] = {
    "100 headers": _headers(100, 1),
    "200 headers": _headers(200, 1),
    "10,000 headers": _headers(10_000, 1),
    "a header of 8,100": _headers(1, 8_100),
    "a header of 9,000": _headers(1, 9_000),
    "a header of 100,000": _headers(1, 100_000),
    "8 headers of 8,000": _headers(8, 8_000),
    "a name of 9,000": lambda path: b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n" + b"X" * 9_000 + b": b\r\n\r\n",
    "1,000 cookies": lambda path: b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nCookie: " + b"a=b; " * 1_000 + b"\r\n\r\n",
}


async def test_header_floods_meet_limits_not_errors(service: Service) -> None:
    tally = Tally("header counts and sizes")
    path = click_path(service).encode()
    for name, build in HEADER_FLOODS.items():
        answer = tally.count(await exchange(service.port, build(path)), name, expected=(302, 400, 431))
        assert b"b" * 100 not in answer.body  # refused bytes are not echoed
    tally.report()


@pytest.mark.parametrize(("what", "count"), [("/healthz", 2_000), ("clicks", 200), ("404s", 1_000)])
async def test_pipelined_requests_are_all_answered_in_order(service: Service, what: str, count: int) -> None:
    tally = Tally(f"pipelined {what}")
    paths = {
        "/healthz": ["/healthz"] * count,
        "clicks": [click_path(service)] * count,
        "404s": [f"/no-such-page/{n}" for n in range(count)],
    }[what]
    expected = {"/healthz": 200, "clicks": 302, "404s": 404}[what]
    async with connection(service.port) as raw:
        await raw.send(b"".join(f"GET {p} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for p in paths))
        for n in range(count):
            tally.count(await raw.answer(), f"{what} {n}", expected=(expected,))
    tally.report()


async def test_a_malformed_request_ends_a_pipeline(service: Service) -> None:
    """Nothing after a refused request is answered (aiohttp refuses the whole read it came in, answering once)."""
    tally = Tally("pipeline with a malformed request")
    ok = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    async with connection(service.port) as raw:
        await raw.send(ok * 3 + b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n" + ok * 3)
        everything = tally.count(await raw.closed(5.0), "the pipeline")
    statuses = [int(s) for s in re.findall(rb"HTTP/1\.[01] (\d{3})", everything.raw)]
    assert statuses[-1] == 400 and set(statuses[:-1]) <= {200} and len(statuses) <= 4, statuses
    tally.report()


TARGETS: dict[str, tuple[bytes, tuple[int, ...]]] = {
    "HTTP/1.0 click, no Host": (b"GET {ck} HTTP/1.0\r\n\r\n", (302,)),
    "HTTP/1.0 click, evil Host": (b"GET {ck} HTTP/1.0\r\nHost: evil.example\r\n\r\n", (302,)),
    "HTTP/1.0 keep-alive": (b"GET {ck} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", (302,)),
    "HTTP/1.1 without Host": (b"GET {ck} HTTP/1.1\r\nConnection: close\r\n\r\n", (302, 400)),
    "absolute-form, evil host": (b"GET http://evil.example{ck} HTTP/1.1\r\nHost: evil.example\r\n\r\n", (302, 400)),
    "absolute-form https": (b"GET https://evil.example{ck} HTTP/1.1\r\nHost: x\r\n\r\n", (302, 400)),
    "absolute-form with userinfo": (
        b"GET http://shop.example@evil.example{ck} HTTP/1.1\r\nHost: x\r\n\r\n",
        (302, 400),
    ),
    "Host: evil": (b"GET {ck} HTTP/1.1\r\nHost: evil.example\r\n\r\n", (302,)),
    "Host with a path": (b"GET {ck} HTTP/1.1\r\nHost: evil.example/x?\r\n\r\n", (302, 400)),
    "Host with userinfo": (b"GET {ck} HTTP/1.1\r\nHost: shop.example@evil.example\r\n\r\n", (302, 400)),
    "two Hosts": (b"GET {ck} HTTP/1.1\r\nHost: x\r\nHost: evil.example\r\n\r\n", (302, 400)),
    "X-Forwarded-Host": (b"GET {ck} HTTP/1.1\r\nHost: x\r\nX-Forwarded-Host: evil.example\r\n\r\n", (302,)),
    "X-Forwarded-Proto": (b"GET {ck} HTTP/1.1\r\nHost: x\r\nX-Forwarded-Proto: javascript\r\n\r\n", (302,)),
    "Forwarded": (b"GET {ck} HTTP/1.1\r\nHost: x\r\nForwarded: host=evil.example;proto=http\r\n\r\n", (302,)),
    "X-Original-URL": (b"GET {ck} HTTP/1.1\r\nHost: x\r\nX-Original-URL: /metrics\r\n\r\n", (302,)),
    "X-Rewrite-URL": (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Rewrite-URL: /metrics\r\n\r\n", (200,)),
    "OPTIONS *": (b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", (400, 404, 405)),
    "CONNECT": (b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n", (400, 404, 405)),
    "TRACE": (b"TRACE {ck} HTTP/1.1\r\nHost: x\r\nX-Secret: s3cr3t\r\n\r\n", (400, 404, 405)),
    "HTTP/2 preface": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", (400, 505)),
}


async def test_old_and_odd_targets_never_move_a_click(service: Service) -> None:
    """The edge builds no URL from the request: `Host` and its cousins change nothing."""
    tally = Tally("HTTP/1.0, absolute-form and Host games")
    path = click_path(service).encode()
    for name, (template, expected) in TARGETS.items():
        answer = tally.count(await exchange(service.port, template.replace(b"{ck}", path)), name, expected=expected)
        assert answer.status != 302 or answer.location == "https://shop.example/landing", (name, answer.location)
        assert b"s3cr3t" not in answer.raw and b"clickbus_" not in answer.raw
    tally.report()


HOST_GAMES = [
    {"Host": "evil.example"},
    {"Host": "evil.example:8443"},
    {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "javascript"},
    {"Forwarded": "host=evil.example;proto=https"},
    {"X-Forwarded-Prefix": "//evil.example"},
]


async def test_inserted_urls_ignore_the_request_host(service: Service) -> None:
    tally = Tally("Host games on insertion")
    body = orjson.dumps(
        {"markup": "${CLICK_URL}", "landing_url": "https://shop.example/", "auction": {"member_id": 13}}
    )
    for headers in HOST_GAMES:
        payload = request("POST", "/v1/insert", headers={"Content-Type": "application/json", **headers}, body=body)
        # a foreign Host is refused outright (DNS rebinding, see clickbus.edge.admin_guard): nothing is minted
        expected = 421 if "Host" in headers else 200
        answer = tally.count(await exchange(service.admin_port, payload), str(headers), expected=(expected,))
        if expected == 421:
            assert b"/ck/" not in answer.body, answer.raw[:300]
            continue
        minted = orjson.loads(answer.body)
        urls = [minted["click_url"], minted["impression_url"], *minted["beacons"].values(), minted["markup"]]
        assert all(url.startswith(service.url + "/") for url in urls), (headers, urls)
    assert insert_url(service).startswith(service.admin_url)
    tally.report()


def _query(count: int, name: str = "a") -> str:
    return "&".join(f"{name}{n}=1" for n in range(count))


async def test_query_floods_on_clicks_and_pixels(service: Service) -> None:
    tally = Tally("query-string floods on /ck and /i")
    path = click_path(service)
    pixel = inserter(service).insert("", AD).impression_url.removeprefix(service.url)
    evil, good = quote("https://evil.example/", safe=""), quote("https://shop.example/deep", safe="")
    floods = {
        "700 parameters": (_query(700), (302, 200, 400, 414)),
        "1,500 parameters": (_query(1_500), (302, 200, 400, 414)),
        "300 r= to evil, then one allowed": ("&".join([f"r={evil}"] * 300 + [f"r={good}"]), (302, 200, 400, 414)),
        "one allowed r=, then 300 to evil": ("&".join([f"r={good}"] + [f"r={evil}"] * 100), (302, 200, 400, 414)),
        "pos= 1,000 times": (_query(1_000, "pos"), (302, 200, 400, 414)),
        "empty names": ("&" * 7_000, (302, 200, 400, 414)),
        "a value of 7,000": ("r=" + "x" * 7_000, (302, 200, 400, 414)),
        "raw bytes": ("r=%ff%fe&%00=%00", (302, 200)),
    }
    for target in (path, pixel):
        for name, (query, expected) in floods.items():
            answer = await exchange(service.port, request("GET", f"{target}?{query}"))
            tally.count(answer, f"{target[:3]} {name}", expected=expected)
    tally.report()


TRAVERSALS = [
    "/ck/..%2f..%2fmetrics",
    "/ck/%2e%2e/%2e%2e/metrics",
    "/ck/..%252f..%252fmetrics",
    "/ck/{token}%2f..%2f..%2fmetrics",
    "/ck/{token}/../../metrics",
    "/ck/{token}/",
    "/ck//{token}",
    "/ck/{token};jsessionid=1",
    "/ck/{token}%00",
    "/ck/{token}%23",
    "/ck/{token}%3F/r=https://evil.example/",
    "/ck/%2F%2Fevil.example",
    "/ck/\\\\evil.example",
    "/ck/{token}%5c..%5cmetrics",
    "/CK/{token}",
    "/ck/" + "..%2f" * 1000,
    "/i/..%2fmetrics",
    "/v1/beacon/click/..%2f..%2f..%2fmetrics",
]


async def test_path_traversal_in_tokens_reaches_nothing(service: Service) -> None:
    tally = Tally("path traversal and encoded slashes in /ck/{token}")
    token = click_path(service).removeprefix("/ck/")
    for template in TRAVERSALS:
        path = template.replace("{token}", token)
        method = "POST" if path.startswith("/v1/") else "GET"
        answer = tally.count(await exchange(service.port, request(method, path)), path[:80], expected=(400, 404, 405))
        assert b"clickbus_" not in answer.body and b"openapi" not in answer.body
    tally.report()


HANG_UPS = {
    "Content-Length 100, 1 byte": b"Content-Length: 100\r\n\r\n{",
    "a chunk cut short": b"Transfer-Encoding: chunked\r\n\r\n10\r\n{",
    "no last chunk": b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n",
}


@pytest.mark.parametrize("how", ["half-close", "reset"])
async def test_a_sender_hanging_up_mid_body_leaves_no_traceback(service: Service, how: str) -> None:
    """Before: the handler's read raised, and each hang-up wrote an error with a traceback into the log."""
    tally = Tally(f"hang-ups mid-body ({how})")
    logged_before = len(service.logs())
    token = click_path(service).removeprefix("/ck/")
    heads = {
        "server click": f"POST /api/v1/campaigns/click HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\n",
        "beacon": f"POST /v1/beacon/click/{token} HTTP/1.1\r\nHost: x\r\n",
        "insert": f"POST /v1/insert HTTP/1.1\r\nHost: {RAW_HOST}\r\n",  # a name the internal listener answers
    }
    for route, head in heads.items():
        port = service.admin_port if route == "insert" else service.port
        for name, framing in HANG_UPS.items():
            async with connection(port) as raw:
                await raw.send(head.encode() + b"Content-Type: application/json\r\n" + framing)
                await asyncio.sleep(0.05)
                if how == "reset":
                    raw.reset()
                    tally.count(Answer(None), f"{route}, {name}")
                else:
                    raw.half_close()
                    answer = tally.count(await raw.closed(5.0), f"{route}, {name}")
                    assert answer.status in (None, 400), answer.raw[:200]
    await asyncio.sleep(0.5)  # the server notices the last hang-up
    logged = service.logs()[logged_before:]
    assert "Traceback" not in logged and '"level":"error"' not in logged, logged[-2000:]
    tally.report()
