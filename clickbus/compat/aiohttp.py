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
- `Application._handle(request)`: the request handler `Application._make_handler` gives aiohttp's `Server`
  (whose connections call it for every request), which resolves the route and runs the handler.
  `FrontedApplication` overrides it so that a `front` answers some requests before the router, and defines
  the subclass with aiohttp's "inheritance is discouraged" `DeprecationWarning` silenced. It extends `ATTRS`
  with its one attribute, as aiohttp's debug mode asks of subclasses.
- What `RequestHandler.finish_response`, `start` and the access loggers use of a response, so that a front
  may answer with an object that is not a `StreamResponse` (see `Answer`): `await prepare(request)`, then
  `await write_eof()`, then `status` and `body_length` (access logs), `headers` (only in an access log
  format naming a response header) and `keep_alive` (whether the connection stays open).
- `helpers.rfc822_formatted_time()`: the `Date` value aiohttp writes (cached per second).
- `RequestHandler.transport` (from `BaseProtocol`): `start()` closes it when a connection's last answer is
  written, and skips that when it is None. `detach_transport` takes it, so that a refused connection can be
  closed lingering (`clickbus.edge.connections`); the loop's `connection_lost` still reaches the handler.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, cast

from aiohttp import hdrs, helpers, web
from aiohttp.http_exceptions import BadHttpMessage
from aiohttp.web_protocol import RequestHandler
from multidict import CIMultiDictProxy

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

    __slots__ = ("_body", "_inner", "_limit", "_pending", "_uncounted")

    def __init__(self, inner: Any, limit: int) -> None:
        self._inner = inner
        self._limit = limit
        self._body: Any = None  # the last message's payload: bytes fed before its end are body, not head
        self._pending = 0  # bytes of the head being received (at most a chunk short: never too many)
        self._uncounted = 0  # the length of the last chunk not counted in `_pending`: what it may be short of

    def feed_data(self, data: bytes) -> Any:
        in_head = self._body is None or self._body.is_eof()
        parsed = self._inner.feed_data(data)
        if messages := parsed[0]:
            # A head completed here is made of this chunk, the pending bytes and at most the last chunk they
            # do not count: while those are within the cap, so is every head, and none needs measuring.
            if self._uncounted + self._pending + len(data) > self._limit:
                for message, _ in messages:
                    if (size := head_size(message)) > self._limit:
                        raise HeadTooLarge(size, self._limit)
            self._body = messages[-1][1]
            self._pending = 0
            self._uncounted = len(data)  # the start of the next head, if any
        elif in_head:  # no head completed: all of `data` belongs to the one being received
            self._pending += len(data)
            if self._pending > self._limit:
                raise HeadTooLarge(self._pending, self._limit)
        else:  # a body, and perhaps the start of the next head
            self._uncounted = len(data)
        return parsed

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def cap_heads(handler: RequestHandler, limit: int) -> None:
    """Make `handler`'s connection refuse request heads larger than `limit` bytes with `HeadTooLarge`."""
    handler._parser = _CappedParser(handler._parser, limit)  # type: ignore[assignment]  # its duck, see the class


class Answer(Protocol):
    """An answer a front gives aiohttp instead of a `StreamResponse`: what aiohttp uses of one."""

    status: int
    keep_alive: bool
    body_length: int

    @property
    def headers(self) -> CIMultiDictProxy[str]: ...

    async def prepare(self, request: web.BaseRequest) -> None: ...

    async def write_eof(self) -> None: ...


# The answering of a request the front takes, or None to leave the request to the router.
Front = Callable[[web.Request], Awaitable[Answer] | None]

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # aiohttp discourages subclasses; this one is checked

    class FrontedApplication(web.Application):
        """An application whose requests meet its `front` before its router (see the module)."""

        ATTRS = web.Application.ATTRS | frozenset(["_front"])

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._front: Front | None = None

        @property
        def front(self) -> Front | None:
            return self._front

        @front.setter
        def front(self, front: Front | None) -> None:
            self._front = front

        async def _handle(self, request: web.Request) -> web.StreamResponse:
            front = self._front
            if front is not None and (answering := front(request)) is not None:
                return cast(web.StreamResponse, await answering)  # an `Answer`: see the module
            return await super()._handle(request)


def http_date() -> str:
    """The `Date` header value aiohttp writes now."""
    return helpers.rfc822_formatted_time()
