"""The private attributes clickbus uses in prometheus-client, aiokafka and aiohttp still exist and behave.

When one of these fails after an upgrade, read the module it names (clickbus/compat/...): its docstring
says what each internal is used for and which version it was checked against.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import re
import socket
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]
from aiokafka.errors import KafkaTimeoutError  # type: ignore[import-untyped]
from prometheus_client import CollectorRegistry, Counter, Histogram
from pytest_aiohttp import AiohttpClient

from clickbus.compat import aiohttp as aiohttp_compat
from clickbus.compat import aiokafka as kafka_compat
from clickbus.compat import prometheus as prometheus_compat
from clickbus.metrics import MULTIPROC_ENV

PROMETHEUS = f"prometheus-client internals moved (checked against {prometheus_compat.CHECKED_VERSION})"
AIOKAFKA = f"aiokafka internals moved (checked against {kafka_compat.CHECKED_VERSION})"
AIOHTTP = f"aiohttp internals moved (checked against {aiohttp_compat.CHECKED_VERSION})"


def test_histogram_bounds_and_batched_observations() -> None:
    registry = CollectorRegistry()
    family = Histogram("t_seconds", "test", ["l"], buckets=(0.1, 1.0), registry=registry)
    child = family.labels("a")
    assert list(prometheus_compat.bucket_bounds(child)) == [0.1, 1.0, math.inf], PROMETHEUS
    prometheus_compat.add_observations(child, 2.65, [1, 1, 1])  # 0.05, 0.6 and 2.0, one per bucket
    sample = registry.get_sample_value
    assert sample("t_seconds_bucket", {"l": "a", "le": "0.1"}) == 1, PROMETHEUS
    assert sample("t_seconds_bucket", {"l": "a", "le": "1.0"}) == 2, PROMETHEUS
    assert sample("t_seconds_count", {"l": "a"}) == 3, PROMETHEUS
    assert sample("t_seconds_sum", {"l": "a"}) == pytest.approx(2.65), PROMETHEUS


def test_value_class_is_chosen_again_for_a_multiprocess_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    try:
        prometheus_compat.choose_value_class()
        Counter("t_events", "test", registry=CollectorRegistry()).inc()
        assert list(tmp_path.glob("counter_*.db")), PROMETHEUS
    finally:
        monkeypatch.delenv(MULTIPROC_ENV)
        prometheus_compat.choose_value_class()  # back to in-process samples for the other tests


async def test_producer_sender_and_accumulator() -> None:
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:1")  # never started: no broker needed
    assert inspect.iscoroutinefunction(producer._sender.close), AIOKAFKA
    assert not kafka_compat.sender_died(producer), AIOKAFKA
    await kafka_compat.abandon_pending(producer, KafkaTimeoutError("test"), 1.0)
    await producer.stop()


async def _heads(request: web.Request) -> web.Response:
    return web.Response(text=str(aiohttp_compat.heads_parsed(request.protocol)))


async def _bare(request: web.Request) -> web.Response:
    return aiohttp_compat.BareResponse(text="bare")


async def test_heads_parsed_counts_the_request_heads_of_a_connection(aiohttp_client: AiohttpClient) -> None:
    app = web.Application()
    app.router.add_get("/heads", _heads)
    client = await aiohttp_client(app)
    answers = [await (await client.get("/heads")).text() for _ in range(3)]  # one kept-alive connection
    assert answers == ["1", "2", "3"], AIOHTTP


async def test_bare_response_has_no_server_header(aiohttp_client: AiohttpClient) -> None:
    app = web.Application()
    app.router.add_get("/bare", _bare)
    client = await aiohttp_client(app)
    response = await client.get("/bare")
    assert (response.status, await response.text()) == (200, "bare"), AIOHTTP
    assert "Server" not in response.headers, AIOHTTP


async def _ok(request: web.BaseRequest) -> web.Response:
    return web.Response()


async def test_capped_parser_refuses_large_heads_and_counts_them_exactly() -> None:
    from aiohttp.web_protocol import RequestHandler

    small = b"GET /p HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 50 + b"\r\n\r\n"
    handler = RequestHandler(web.Server(_ok), loop=asyncio.get_running_loop())
    aiohttp_compat.cap_heads(handler, len(small))
    ((message, _),), _, _ = handler._parser.feed_data(small)  # type: ignore[union-attr]
    assert aiohttp_compat.head_size(message) == len(small), AIOHTTP
    with pytest.raises(aiohttp_compat.HeadTooLarge):
        handler._parser.feed_data(small.replace(b"X-A: ", b"X-A: a"))  # type: ignore[union-attr]


class _Written:
    """The least an answer of a front may be (see `clickbus.compat.aiohttp.Answer`)."""

    status = 200
    body_length = 0
    keep_alive = True

    async def prepare(self, request: web.BaseRequest) -> None:
        body = b"front"
        self.body_length = await _send(request, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n" + body)

    async def write_eof(self) -> None:
        return None


async def _send(request: web.BaseRequest, data: bytes) -> int:
    await request.writer.write(data)
    await request.writer.drain()
    return len(data)


async def test_a_front_answers_before_the_router_and_aiohttp_writes_and_keeps_alive(
    aiohttp_client: AiohttpClient,
) -> None:
    app = aiohttp_compat.FrontedApplication()
    app.router.add_get("/routed", _ok)
    answered: list[str] = []

    def front(request: web.Request) -> Awaitable[aiohttp_compat.Answer] | None:
        if request.raw_path != "/front":
            return None
        answered.append(request.raw_path)
        return _answer()

    app.front = front
    client = await aiohttp_client(app)
    for _ in range(2):  # one kept-alive connection: the answer's keep_alive is read
        response = await client.get("/front")
        assert (response.status, await response.text()) == (200, "front"), AIOHTTP
    assert (await client.get("/routed")).status == 200, AIOHTTP
    assert (await client.get("/elsewhere")).status == 404, AIOHTTP
    assert answered == ["/front", "/front"], AIOHTTP
    assert len(client.server.runner.server.connections) == 1, AIOHTTP  # type: ignore[union-attr]


async def _answer() -> aiohttp_compat.Answer:
    return _Written()  # type: ignore[return-value]  # no headers property: not used by the default access log


def test_http_date_is_aiohttps_date_of_now() -> None:
    text = aiohttp_compat.http_date()
    assert re.fullmatch(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT", text), AIOHTTP


@pytest.mark.parametrize(
    "before",
    [
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n",  # a head completed in the chunk where the large one starts
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n",  # a body that ends where it starts
    ],
)
async def test_capped_parser_measures_a_head_begun_in_a_chunk_it_did_not_count(before: bytes) -> None:
    from aiohttp.web_protocol import RequestHandler

    limit = 2000
    handler = RequestHandler(web.Server(_ok), loop=asyncio.get_running_loop())
    aiohttp_compat.cap_heads(handler, limit)
    large = b"GET /b HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * limit + b"\r\n\r\n"
    parser: Any = handler._parser
    if before.startswith(b"POST"):
        parser.feed_data(before)  # the head alone: its body comes with the next chunk
        before = b"abc"
    parser.feed_data(before + large[:-20])
    parser.feed_data(large[-20:-10])  # small chunks after the large one: the head is still measured whole
    with pytest.raises(aiohttp_compat.HeadTooLarge):
        parser.feed_data(large[-10:])


async def test_a_detached_transport_is_left_open_by_aiohttp() -> None:
    """aiohttp closes a connection after an answer that ends it, unless its transport has been taken."""
    from aiohttp.web_protocol import RequestHandler

    ours, theirs = socket.socketpair()
    handler = RequestHandler(web.Server(_ok), loop=asyncio.get_running_loop())
    transport, _ = await asyncio.get_running_loop().connect_accepted_socket(lambda: handler, ours)
    taken = aiohttp_compat.detach_transport(handler)
    assert taken is transport and handler.transport is None, AIOHTTP
    theirs.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    await asyncio.sleep(0.2)  # answered and finished by aiohttp, with nowhere to write and nothing to close
    assert not transport.is_closing(), AIOHTTP
    transport.close()
    theirs.close()
