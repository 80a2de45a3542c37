"""aiohttp internals clickbus relies on. Checked against aiohttp 3.14.5.

- `RequestHandler._request_count`: how many request heads a connection's parser has produced. The head
  deadline (`clickbus.edge.connections`) ends when it moves: aiohttp has no hook for "a head is parsed"
  that runs in step with the parser (the application sees the request a loop iteration later).
- `StreamResponse._prepare_headers`: where aiohttp adds its `Server` header. `on_response_prepare` removes
  it from the applications' answers, but errors aiohttp answers before any application runs (a malformed
  request) have no such signal; `BareResponse` removes it right after it is added.
- `RequestHandler._parser` (from `BaseProtocol`), its `feed_data` returning `(messages, upgraded, tail)`, and
  its messages' `method`, `path` and `raw_headers`: aiohttp bounds each header line (8190 bytes) and their
  number (128), not their sum. `cap_heads` wraps the connection's parser so a parsed head larger than the
  cap raises `HeadTooLarge`, which aiohttp turns into the error answer of a malformed request, as for a
  line too long; the handler answers it `431`. So that a head is refused before up to 1 MB of it is
  buffered, the bytes fed while no head is complete and no body is pending (the last message's payload,
  a `StreamReader`, `is_eof()`) count toward the cap as they arrive.
- `RequestHandler.transport` (from `BaseProtocol`): `start()` closes it when a connection's last answer is
  written, and skips that when it is None. `detach_transport` takes it, so that a refused connection can be
  closed lingering (`clickbus.edge.connections`); the loop's `connection_lost` still reaches the handler.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import hdrs, web
from aiohttp.http_exceptions import BadHttpMessage
from aiohttp.web_protocol import RequestHandler

CHECKED_VERSION = "3.14.5"


def heads_parsed(handler: RequestHandler) -> int:
    """How many request heads `handler`'s connection has delivered so far."""
    count: int = handler._request_count
    return count


def detach_transport(handler: RequestHandler) -> asyncio.Transport | None:
    """Take `handler`'s transport from aiohttp, which then neither writes to nor closes it; the caller closes it."""
    transport = handler.transport
    handler.transport = None
    return transport


class BareResponse(web.Response):
    """A response without aiohttp's `Server` header."""

    async def _prepare_headers(self) -> None:
        await super()._prepare_headers()
        self.headers.popall(hdrs.SERVER, None)


class HeadTooLarge(BadHttpMessage):
    """A request head (request line and headers) larger than the cap."""

    code = 431

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"request head of at least {size} bytes, over {limit}")


def head_size(message: Any) -> int:
    """The bytes of a parsed request head: its request line and headers, each line with its CRLF, and the blank line."""
    fields = sum(len(name) + len(value) + 4 for name, value in message.raw_headers)  # "name: value\r\n"
    return len(message.method) + len(message.path) + len(" HTTP/1.1\r\n") + 1 + fields + 2


class _CappedParser:
    """aiohttp's request parser, refusing heads larger than `limit` bytes."""

    __slots__ = ("_body", "_inner", "_limit", "_pending")

    def __init__(self, inner: Any, limit: int) -> None:
        self._inner = inner
        self._limit = limit
        self._body: Any = None  # the last message's payload: bytes fed before its end are body, not head
        self._pending = 0  # bytes of the head being received (at most a chunk short: never too many)

    def feed_data(self, data: bytes) -> Any:
        in_head = self._body is None or self._body.is_eof()
        parsed = self._inner.feed_data(data)
        for message, payload in parsed[0]:
            if (size := head_size(message)) > self._limit:
                raise HeadTooLarge(size, self._limit)
            self._body = payload
        if parsed[0]:
            self._pending = 0
        elif in_head:  # no head completed: all of `data` belongs to the one being received
            self._pending += len(data)
            if self._pending > self._limit:
                raise HeadTooLarge(self._pending, self._limit)
        return parsed

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def cap_heads(handler: RequestHandler, limit: int) -> None:
    """Make `handler`'s connection refuse request heads larger than `limit` bytes with `HeadTooLarge`."""
    handler._parser = _CappedParser(handler._parser, limit)  # type: ignore[assignment]  # its duck, see the class
