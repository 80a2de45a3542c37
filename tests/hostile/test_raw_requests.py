"""A corpus of malformed requests replayed against a real `clickbus run` over a raw socket.

The pass condition for every entry: an answer (or a closed connection), never a `5xx`, never a
traceback, never a hang, and never a `Location` to a host nobody signed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.hostile.harness import Tally, click_path, exchange
from tests.support.service import Service

_INSERT = b"POST /v1/insert HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
# Name -> the request, built around a signed click path.
RAW_REQUESTS: dict[str, Callable[[bytes], bytes]] = {
    "CRLF in the request line": lambda ck: (
        b"GET " + ck + b"\r\nLocation: https://evil.example/ HTTP/1.1\r\nHost: x\r\n\r\n"
    ),
    "encoded CRLF in the path": lambda ck: (
        b"GET " + ck + b"%0d%0aLocation:%20https://evil.example/ HTTP/1.1\r\nHost: x\r\n\r\n"
    ),
    "obsolete line folding": lambda ck: b"GET " + ck + b" HTTP/1.1\r\nHost: x\r\nUser-Agent: a\r\n b\r\n\r\n",
    "referer of 100,000": lambda ck: b"GET " + ck + b" HTTP/1.1\r\nHost: x\r\nReferer: " + b"r" * 100_000 + b"\r\n\r\n",
    "token of 100,000": lambda ck: b"GET /ck/" + b"A" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "NUL in the path": lambda ck: b"GET " + ck + b"\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
    "unknown method": lambda ck: b"BREW " + ck + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "unknown version": lambda ck: b"GET " + ck + b" HTTP/9.9\r\nHost: x\r\n\r\n",
    "truncated JSON": lambda ck: _INSERT + b'Content-Length: 5\r\n\r\n{"a":',
    "Content-Length of 99,999,999": lambda ck: _INSERT + b"Content-Length: 99999999\r\n\r\n{}",
    "bad chunk size": lambda ck: _INSERT + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    "Content-Length and chunked": lambda ck: (
        _INSERT + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
    "TLS hello": lambda ck: b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,
    "bad percent escape": lambda ck: b"GET /ck/%ZZ HTTP/1.1\r\nHost: x\r\n\r\n",
    "path traversal": lambda ck: b"GET /ck/..%2f..%2fetc%2fpasswd HTTP/1.1\r\nHost: x\r\n\r\n",
    "HTTP/0.9": lambda ck: b"GET " + ck + b"\r\n\r\n",
    "absolute-form target": lambda ck: b"GET http://evil.example" + ck + b" HTTP/1.1\r\nHost: evil.example\r\n\r\n",
    "two Host headers": lambda ck: b"GET " + ck + b" HTTP/1.1\r\nHost: x\r\nHost: evil.example\r\n\r\n",
}


@pytest.fixture(scope="module")
def tally() -> Iterator[Tally]:
    """One category for the whole corpus: its line is printed once every entry has run."""
    counts = Tally("raw requests")
    yield counts
    counts.report()


@pytest.mark.parametrize("name", RAW_REQUESTS)
async def test_raw_hostile_requests(service: Service, tally: Tally, name: str) -> None:
    failed_before = len(tally.failures)
    answer = tally.count(await exchange(service.port, RAW_REQUESTS[name](click_path(service).encode())), name)
    assert tally.failures[failed_before:] == []
    assert b"Traceback" not in answer.raw
