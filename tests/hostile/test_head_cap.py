"""Request heads larger than `edge.max_head_bytes` (32 KiB) in all are `431`, on both listeners.

aiohttp bounds each header line (8190 bytes) and their number (128), not their sum: 60 headers
of 8 KB each (480 KB) were accepted. Heads just under the cap are answered as usual; heads over
it get `431` with the fixed body and a closed connection, sent whole or in small pieces.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from clickbus.compat.aiohttp import head_size
from tests.hostile.harness import HANG_S, RAW_HOST, Answer, Tally, click_path, connection, exchange
from tests.support.service import Service

CAP = 32 * 1024
HEAD = b"GET {path} HTTP/1.1\r\nHost: " + RAW_HOST.encode() + b"\r\nConnection: close\r\n"  # a Host both listeners take


def head(path: bytes, fields: list[bytes]) -> bytes:
    return HEAD.replace(b"{path}", path) + b"".join(fields) + b"\r\n"


def filled(path: bytes, total: int, *, field_bytes: int = 8000) -> bytes:
    """A head of exactly `total` bytes, its headers of at most `field_bytes` each."""
    base = len(head(path, []))
    fields, left, n = [], total - base, 0
    while left > 0:
        size = min(field_bytes, left)
        name = b"X-%d: " % n
        fields.append(name + b"v" * (size - len(name) - 2) + b"\r\n")
        left -= size
        n += 1
    built = head(path, fields)
    assert len(built) == total
    return built


CASES: dict[str, tuple[Callable[[bytes], bytes], bool]] = {  # name -> (the request, whether it is over the cap)
    "60 headers of 8 KB": (lambda p: head(p, [b"X-%d: " % i + b"v" * 8000 + b"\r\n" for i in range(60)]), True),
    "5 headers of 8 KB": (lambda p: head(p, [b"X-%d: " % i + b"v" * 8000 + b"\r\n" for i in range(5)]), True),
    "a head of exactly the cap": (lambda p: filled(p, CAP), False),
    "a head one byte over the cap": (lambda p: filled(p, CAP + 1), True),
    "a head of 31 KiB": (lambda p: filled(p, 31 * 1024), False),
    "120 headers of 300 bytes": (lambda p: filled(p, 36_000, field_bytes=300), True),
    "a small head": (lambda p: head(p, [b"User-Agent: Mozilla/5.0\r\n"]), False),
}


def listeners(service: Service) -> dict[str, tuple[int, bytes, int]]:
    """Listener -> (port, a path, its usual status)."""
    return {
        "public": (service.port, click_path(service).encode(), 302),
        "internal": (service.admin_port, b"/healthz", 200),
    }


@pytest.mark.parametrize("listener", ["public", "internal"])
async def test_heads_over_the_cap_get_431(service: Service, listener: str) -> None:
    tally = Tally(f"head cap: {listener}")
    port, path, ok = listeners(service)[listener]
    for name, (build, over) in CASES.items():
        request = build(path)
        answer = tally.count(await exchange(port, request), name, expected=(431,) if over else (ok,))
        if over:
            assert answer.body == b"431 Request Header Fields Too Large\n", name
    async with connection(port) as raw:  # a head over the cap, trickled in 1 KB pieces, without Connection: close
        request = CASES["60 headers of 8 KB"][0](path).replace(b"Connection: close\r\n", b"")
        trickled: Answer | None = None
        for start in range(0, len(request), 1024):
            if not await raw.send(request[start : start + 1024]):
                break
            # Stop sending once answered, as a client would: bytes sent after the server's close draw a reset,
            # which may take the 431 already on its way with it (a race of the test, not of the server).
            if not (early := await raw.answer(limit_s=0.05)).hung:
                trickled = early
                break
        tally.count(trickled or await raw.answer(), "60 headers of 8 KB in 1 KB pieces", expected=(431,))
        assert not (await raw.closed(HANG_S)).hung  # and the connection is closed
    async with connection(port) as raw:  # an unfinished head over the cap: refused before it ends
        await raw.send(CASES["60 headers of 8 KB"][0](path)[: CAP + 2048])
        tally.count(await raw.answer(), "an unfinished head of 34 KB", expected=(431,))
    async with connection(port) as raw:  # kept alive: a request with a body, then a head over the cap
        body = b'{"user_id": "' + b"u" * 30_000 + b'"}'
        head = b"POST /healthz HTTP/1.1\r\nHost: %b\r\nContent-Length: %d\r\n\r\n" % (RAW_HOST.encode(), len(body))
        first = head + body
        await raw.send(first + CASES["a head of 31 KiB"][0](path))
        tally.count(await raw.answer(), "a 30 KB body, then a 31 KiB head: the body is not head", expected=(405,))
        tally.count(await raw.answer(), "the 31 KiB head after a 30 KB body", expected=(ok,))
    tally.report()


def test_head_size_counts_every_byte_of_the_head() -> None:
    from aiohttp.http_parser import HttpRequestParser

    for built in (filled(b"/p", 500), filled(b"/ck/x?y=1", 2000, field_bytes=100)):
        parser = HttpRequestParser(None, None, 2**16)
        ((message, _),), _, _ = parser.feed_data(built)
        assert head_size(message) == len(built)
