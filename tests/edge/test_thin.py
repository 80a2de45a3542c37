"""The thin path (`clickbus.edge.thin`) answers byte for byte as the router's handlers do, and appends the same records.

Each exchange is sent over a raw socket to two edges on the same keys: one with the thin path
(as `clickbus run` and every `create_app` serve) and one without it (`thin=False`: every request
through aiohttp's router, handlers and `web.Response`, as before the thin path). Their answers,
`Date` values aside, and the records they append, ids and timestamps aside, must be equal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from clickbus.config import Config, HostPort
from clickbus.edge import create_app
from clickbus.edge.appkeys import LOG
from clickbus.edge.connections import bound, listen
from clickbus.edge.serve import make_runner
from clickbus.log import Topic
from clickbus.metrics import Metrics, create_metrics
from clickbus.tokens import AdContext, Keyring, new_key
from tests.support.configs import build_config
from tests.support.records import recorded

AD = AdContext(
    member_id=13,
    auction_id_64=677373076784237441,
    user_id_64=2987961585469200312,
    creative_id=99,
    landing_url="https://shop.example/landing?x=1",
    redirect_hosts=("shop.example", "partner.example"),
)
KEYRING = Keyring({"k1": new_key()}, "k1")
TOKEN = KEYRING.sign(AD, ttl_s=3600)
EXPIRED = KEYRING.sign(AD, ttl_s=60, now=1_000_000)
PERCENT = f"%{ord(TOKEN[0]):02X}{TOKEN[1:]}"  # the same token, its first character percent-encoded
BEACON = "/v1/beacon/click/"
IMPRESSION_BEACON = "/v1/beacon/impression/"
_DATE = re.compile(rb"\r\nDate: [^\r]*\r\n")
_STATUS = re.compile(rb"HTTP/\d\.\d \d{3} ")
_VARYING = ("click_id", "impression_id", "timestamp")


def get(target: str, *headers: str, method: str = "GET", version: str = "1.1") -> bytes:
    lines = [f"{method} {target} HTTP/{version}", "Host: edge.test", "User-Agent: UA/1", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def post(target: str, body: bytes, *headers: str, content_type: str = "application/json") -> bytes:
    lines = [f"POST {target} HTTP/1.1", "Host: edge.test", f"Content-Type: {content_type}", *headers]
    return ("\r\n".join([*lines, f"Content-Length: {len(body)}"]) + "\r\n\r\n").encode() + body


CLOSE = "Connection: close"
USER = b'{"user_id": "u1"}'
# Each entry is what one connection sends; the server's answers are read until it closes the connection.
EXCHANGES: dict[str, bytes] = {
    "redirect": get(f"/ck/{TOKEN}", CLOSE),
    "redirect with referer": get(f"/ck/{TOKEN}", "Referer: https://news.example/a", CLOSE),
    "redirect to an allowed appended host": get(f"/ck/{TOKEN}?r=https%3A%2F%2Fpartner.example%2Fp&z=1", CLOSE),
    "redirect past an appended host not allowed": get(f"/ck/{TOKEN}?r=https://evil.example/", CLOSE),
    "redirect, empty query": get(f"/ck/{TOKEN}?", CLOSE),
    "redirect, HTTP/1.0": get(f"/ck/{TOKEN}", version="1.0"),
    "redirect, HTTP/1.0 kept alive, then closed": get(f"/ck/{TOKEN}", "Connection: keep-alive", version="1.0")
    + get(f"/ck/{TOKEN}", version="1.0"),
    "redirect, HEAD": get(f"/ck/{TOKEN}", CLOSE, method="HEAD"),
    "redirect, HEAD, HTTP/1.0": get(f"/ck/{TOKEN}", method="HEAD", version="1.0"),
    "redirect, expired token": get(f"/ck/{EXPIRED}", CLOSE),
    "redirect, bad token": get("/ck/not-a-token", CLOSE),
    "redirect, bad token, HEAD": get("/ck/not-a-token", CLOSE, method="HEAD"),
    "redirect, percent-encoded token": get(f"/ck/{PERCENT}", CLOSE),
    "redirect, encoded slash": get(f"/ck/{TOKEN[:5]}%2F{TOKEN[5:]}", CLOSE),
    "redirect, absolute form": get(f"http://edge.test/ck/{TOKEN}", CLOSE),
    "redirect, trailing slash": get(f"/ck/{TOKEN}/", CLOSE),
    "redirect, no token": get("/ck/", CLOSE),
    "redirect, dot segment": get(f"/ck/../ck/{TOKEN}", CLOSE),
    "redirect, wrong method": get(f"/ck/{TOKEN}", CLOSE, method="POST"),
    "redirect, DELETE": get(f"/ck/{TOKEN}", CLOSE, method="DELETE"),
    "redirect, Expect": get(f"/ck/{TOKEN}", "Expect: 100-continue", CLOSE),
    "redirect, unknown Expect": get(f"/ck/{TOKEN}", "Expect: something", CLOSE),
    "pixel": get(f"/i/{TOKEN}", CLOSE),
    "pixel, query": get(f"/i/{TOKEN}?cb=123", CLOSE),
    "pixel, HEAD": get(f"/i/{TOKEN}", CLOSE, method="HEAD"),
    "pixel, HTTP/1.0": get(f"/i/{TOKEN}", version="1.0"),
    "pixel, bad token": get("/i/AAAA", CLOSE),
    "pixel, expired token": get(f"/i/{EXPIRED}", CLOSE),
    "pixel, wrong method": post(f"/i/{TOKEN}", b"", CLOSE),
    "beacon": post(BEACON + TOKEN, USER, CLOSE),
    "beacon, impression, pos": post(IMPRESSION_BEACON + TOKEN + "?pos=3", b'{"session_id": "s"}', CLOSE),
    "beacon, bad pos": post(BEACON + TOKEN + "?pos=07&pos=1", USER, CLOSE),
    "beacon, bad token": post(BEACON + "AAAA", USER, CLOSE),
    "beacon, bad body": post(BEACON + TOKEN, b'{"user_id": 5}', CLOSE),
    "beacon, not JSON": post(BEACON + TOKEN, b"{", CLOSE),
    "beacon, duplicate name": post(BEACON + TOKEN, b'{"user_id": "a", "user_id": "b"}', CLOSE),
    "beacon, wrong type": post(BEACON + TOKEN, USER, CLOSE, content_type="text/plain"),
    "beacon, compressed": post(BEACON + TOKEN, USER, "Content-Encoding: gzip", CLOSE),
    "beacon, too large": post(BEACON + TOKEN, b'{"user_id": "' + b"x" * 70_000 + b'"}', CLOSE),
    "beacon, Expect": post(BEACON + TOKEN, USER, "Expect: 100-continue", CLOSE),
    "beacon, chunked": b"POST " + (BEACON + TOKEN).encode() + b" HTTP/1.1\r\nHost: e\r\nContent-Type: application/json"
    b"\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n11\r\n" + USER + b"\r\n0\r\n\r\n",
    "beacon, preflight": get(BEACON + TOKEN, CLOSE, method="OPTIONS"),
    "beacon, wrong method": get(BEACON + TOKEN, CLOSE),
    "pipelined, kept alive, in order": get(f"/ck/{TOKEN}")
    + get("/ck/not-a-token")
    + get(f"/i/{TOKEN}", method="HEAD")
    + post(BEACON + TOKEN, USER)
    + get("/healthz")
    + get(f"/i/{TOKEN}")
    + get(f"/ck/{TOKEN}", method="HEAD")
    + get(f"/ck/{PERCENT}", CLOSE),
    "health": get("/healthz", CLOSE),
    "not found": get("/nowhere", CLOSE),
}
# Answered before any handler runs: the same on both by construction, but sent through both anyway.
MALFORMED = {"garbage": b"GET /ck/x HTTP/1.1\r\nHost: \x00\r\n\r\n", "HTTP/2 line": b"GET /ck/x HTTP/2.0\r\n\r\n"}


@contextlib.asynccontextmanager
async def serving(config: Config, *, thin: bool, metrics: Metrics) -> AsyncIterator[tuple[int, web.Application]]:
    """The edge served as `clickbus run` serves it (its connection handler: deadlines, no decompression)."""
    app = create_app(config, keyring=KEYRING, metrics=metrics, thin=thin)
    runner = make_runner(app, config)
    await runner.setup()
    server = await listen(runner, HostPort("127.0.0.1", 0), config.edge)
    try:
        yield int(bound(server).rsplit(":", 1)[1]), app
    finally:
        server.close()
        await runner.cleanup()


async def exchange(port: int, data: bytes) -> bytes:
    """Send `data` on a new connection; everything the server answers until it closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


def undated(answer: bytes) -> bytes:
    """`answer` with every `Date` value taken out (they differ by the second they were written in)."""
    dates = _DATE.findall(answer)
    assert len(dates) == len(_STATUS.findall(answer)) - answer.count(b" 100 Continue\r\n"), answer  # one per answer
    return _DATE.sub(b"\r\nDate: -\r\n", answer)


def steady(record: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in record.items() if key not in _VARYING}


async def answers_and_records(
    tmp_path: Path, requests: dict[str, bytes], *, thin: bool, stop_log: bool = False
) -> tuple[dict[str, bytes], list[list[dict[str, Any]]], Metrics]:
    config = build_config(tmp_path / ("thin" if thin else "plain"), edge={"max_body_bytes": 65536})
    metrics = create_metrics()
    async with serving(config, thin=thin, metrics=metrics) as (port, app):
        if stop_log:
            await app[LOG].stop(1.0)
        answers = {name: undated(await exchange(port, data)) for name, data in requests.items()}
    metrics.flush()
    logs = [[steady(r) for r in await recorded(config, topic)] for topic in (Topic.CLICKS, Topic.IMPRESSIONS)]
    return answers, logs, metrics


async def test_the_thin_path_answers_and_records_as_the_router_did(tmp_path: Path) -> None:
    requests = {**EXCHANGES, **MALFORMED}
    thin, thin_logs, thin_metrics = await answers_and_records(tmp_path, requests, thin=True)
    plain, plain_logs, plain_metrics = await answers_and_records(tmp_path, requests, thin=False)
    for name in requests:
        assert thin[name] == plain[name], name
    assert thin_logs == plain_logs
    assert [len(records) for records in thin_logs] == [18, 6]  # the requests above record, HEAD never
    for status in ("302", "400", "503"):
        labels = {"status": status}
        count = thin_metrics.registry.get_sample_value("clickbus_redirect_seconds_count", labels)
        assert count == plain_metrics.registry.get_sample_value("clickbus_redirect_seconds_count", labels), status
    assert thin_metrics.registry.get_sample_value("clickbus_redirect_seconds_count", {"status": "302"}) == 17


async def test_answers_when_the_log_refuses_are_the_routers(tmp_path: Path) -> None:
    names = ["redirect", "redirect, HEAD", "pixel", "pixel, HEAD", "beacon", "beacon, impression, pos"]
    requests = {name: EXCHANGES[name] for name in names}
    thin, _, thin_metrics = await answers_and_records(tmp_path, requests, thin=True, stop_log=True)
    plain, _, _ = await answers_and_records(tmp_path, requests, thin=False, stop_log=True)
    assert thin == plain
    assert [thin[name].split(b"\r\n", 1)[0] for name in names] == [
        b"HTTP/1.1 503 Service Unavailable",
        b"HTTP/1.1 302 Found",  # HEAD records nothing, so the log is not asked
        b"HTTP/1.1 503 Service Unavailable",
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 503 Service Unavailable",
        b"HTTP/1.1 503 Service Unavailable",
    ]
    assert thin_metrics.registry.get_sample_value("clickbus_redirect_seconds_count", {"status": "503"}) == 1


def counting_router(app: web.Application, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths the router of `app` resolves from now on."""
    resolved: list[str] = []
    resolve: Callable[[web.Request], Awaitable[Any]] = app.router.resolve

    async def counting(request: web.Request) -> Any:
        resolved.append(request.path)
        return await resolve(request)

    monkeypatch.setattr(app.router, "resolve", counting)
    return resolved


async def test_the_hot_routes_never_reach_the_router(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Served as `aiohttp_client` serves the edge in tests (aiohttp's own connection handler)."""
    app = create_app(build_config(tmp_path), keyring=KEYRING, metrics=create_metrics())
    async with TestServer(app) as server:
        assert server.port is not None
        port = server.port
        resolved = counting_router(app, monkeypatch)
        for name in ("redirect", "redirect, HEAD", "redirect, bad token", "pixel", "pixel, HEAD", "beacon"):
            assert (await exchange(port, EXCHANGES[name])).startswith(b"HTTP/1.1 "), name
        assert resolved == []
        await exchange(port, EXCHANGES["beacon, impression, pos"])
        assert resolved == []
        for name in ("redirect, percent-encoded token", "redirect, wrong method", "beacon, Expect", "health"):
            await exchange(port, EXCHANGES[name])
        assert len(resolved) == 4  # everything else goes the router's way


async def test_the_thin_path_serves_clickbus_runs_connections_with_their_access_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Through `clickbus run`'s own connection handler (slow-client deadlines, access log), as through test servers."""
    config = build_config(tmp_path, edge={"access_log": True})
    caplog.set_level(logging.INFO, logger="clickbus.access")
    async with serving(config, thin=True, metrics=create_metrics()) as (port, app):
        resolved = counting_router(app, monkeypatch)
        answers = await exchange(port, EXCHANGES["pipelined, kept alive, in order"])
    statuses = re.findall(rb"HTTP/1\.1 (\d+)", answers)
    assert statuses == [b"302", b"400", b"200", b"202", b"200", b"200", b"302", b"302"]
    assert resolved == ["/healthz", f"/ck/{TOKEN}"]  # the percent-encoded token, decoded
    access = [(r.args, r.__dict__["status"]) for r in caplog.records if r.name == "clickbus.access"]
    assert [status for _, status in access] == [302, 400, 200, 202, 200, 200, 302, 302]
    assert access[0][0] == ("GET", f"/ck/{TOKEN}", 302)
    assert b"Server:" not in answers
