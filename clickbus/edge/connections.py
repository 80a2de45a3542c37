"""The edge's HTTP connections: deadlines for slow clients, and nothing said to strangers about the server.

aiohttp closes a connection that stays idle for `keepalive_timeout`, but it neither bounds how
long a request head may take to arrive nor how long a body may (a slowloris holds a file
descriptor for as long as it trickles bytes). `GuardedHandler` is aiohttp's own connection
handler plus one timer: from the first byte of a request (or the connection's opening) its
head must be complete within `edge.header_timeout_s`, or the connection is closed. Bodies are
bounded where they are read (`clickbus.edge.body`), and an answer of 408 closes the
connection at once instead of lingering for the rest of the body.

A request head larger than `edge.max_head_bytes` in all (aiohttp bounds each header line and
their number, not their sum) is answered `431` and the connection closed, on both listeners.

A connection refused that way is closed lingering, as nginx's `lingering_close` does: the answer,
then a FIN, then what the client still sends is read and dropped for up to `LINGER_S` (and
`LINGER_BYTES`) before the close. Closing at once, with the client's bytes unread, makes the kernel
send a reset, and a client still sending may lose the answer to it (an asyncio client does: a
failed write aborts its reads).

Errors aiohttp answers before any handler runs (a malformed request line, a header too long)
get a fixed body naming only the status: aiohttp's default echoed the offending bytes, which
may carry the sender's own `Authorization` header. No answer names the server software.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from aiohttp import hdrs, web
from aiohttp.web_protocol import RequestHandler

from clickbus.compat.aiohttp import BareResponse, HeadTooLarge, cap_heads, detach_transport, heads_parsed
from clickbus.config import EdgeConfig, HostPort
from clickbus.edge.sockets import BACKLOG, bind
from clickbus.logging_setup import JsonAccessLogger, access_logger

logger = logging.getLogger(__name__)

LINGER_S = 2.0  # how long a refused client may go on sending before the close (nginx: lingering_timeout 5 s)
LINGER_BYTES = 1024 * 1024  # and how much of it is read and dropped


@dataclass(frozen=True, slots=True)
class Deadlines:
    """How long a request head may take (and how large it may be), and how long an idle connection is kept."""

    header_s: float
    keepalive_s: float
    head_bytes: int = 32 * 1024

    @classmethod
    def of(cls, edge: EdgeConfig) -> Deadlines:
        return cls(edge.header_timeout_s, edge.keepalive_timeout_s, edge.max_head_bytes)


async def drop_server_header(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare` signal: answers do not name the server software, nor echo an `Expect` header.

    aiohttp answers an unknown `Expect` with `417` and a body quoting the sender's header; the
    answer keeps its status and gets the fixed body of every other refusal.
    """
    response.headers.popall(hdrs.SERVER, None)
    if response.status == HTTPStatus.EXPECTATION_FAILED and isinstance(response, web.Response):
        response.text = f"{response.status} {_phrase(response.status)}\n"


class GuardedHandler(RequestHandler):
    """aiohttp's connection handler, with a deadline on each request head and fixed error bodies."""

    # One timer per connection, re-aimed rather than re-made: a kept-alive connection parses a head
    # per request, and a timer handle each time would cost more than the check itself.
    __slots__ = ("_discarded", "_head_due", "_head_timeout_s", "_head_timer", "_in_request", "_lingering", "_refused")

    def __init__(self, manager: web.Server, *, head_timeout_s: float, head_bytes: int, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        cap_heads(self, head_bytes)
        self._head_timeout_s = head_timeout_s
        self._head_due: float | None = None  # loop time by which the pending head must be whole
        self._head_timer: asyncio.TimerHandle | None = None
        self._in_request = False
        self._refused = False  # a malformed request was answered: close lingering once the answer is written
        self._lingering: asyncio.Transport | None = None  # taken from aiohttp, closed by `_linger`'s timer
        self._discarded = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._lingering = None
        self._disarm()
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._lingering is not None:  # answered and half-closed: read and drop, up to a bound
            self._discarded += len(data)
            if self._discarded > LINGER_BYTES:
                self._lingering.close()
            return
        heads = heads_parsed(self)
        super().data_received(data)
        if heads_parsed(self) != heads:
            self._in_request = True  # the head is complete; the body has its own deadline
            self._disarm()
        elif data and not self._in_request and self._head_due is None:
            self._arm()

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        answered = await super().finish_response(request, resp, start_time)
        self._in_request = False
        if resp.status == HTTPStatus.REQUEST_TIMEOUT:
            self.force_close()  # the body is still trickling in: do not linger for it
        elif self._refused:
            self._linger()
        return answered

    def handle_error(
        self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        if isinstance(exc, HeadTooLarge):  # aiohttp answers every parse error 400
            status = int(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)
        if status >= 500:
            logger.error("error handling a request", exc_info=exc)
        else:  # malformed requests are routine on a public port: no traceback, and never their bytes
            logger.debug("refused a malformed request (%d)", status)
        if request.writer.output_size > 0:
            raise ConnectionError("an answer was already sent")
        response = BareResponse(status=status, text=f"{status} {_phrase(status)}\n")
        response.force_close()
        self._refused = True
        return response

    def _linger(self) -> None:
        """Half-close after the answer, drop what still comes, close after `LINGER_S` or the client's own close."""
        transport = detach_transport(self)  # aiohttp would close it now, with the client's bytes unread
        if transport is None or transport.is_closing():
            return
        self._lingering = transport
        if transport.can_write_eof():
            transport.write_eof()  # the FIN follows the answer once it is flushed
        asyncio.get_running_loop().call_later(LINGER_S, transport.close)

    def _arm(self) -> None:
        loop = asyncio.get_running_loop()
        self._head_due = loop.time() + self._head_timeout_s
        if self._head_timer is None:
            self._head_timer = loop.call_at(self._head_due, self._check_head)

    def _disarm(self) -> None:
        self._head_due = None  # the timer, if any, finds nothing pending when it fires

    def _check_head(self) -> None:
        self._head_timer = None
        if self._head_due is None or self._in_request:
            return
        loop = asyncio.get_running_loop()
        if loop.time() < self._head_due:  # a later head than the one the timer was set for
            self._head_timer = loop.call_at(self._head_due, self._check_head)
            return
        self.force_close()


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def handler_factory(runner: web.AppRunner, deadlines: Deadlines, *, access_log: bool) -> Callable[[], GuardedHandler]:
    """Make one `GuardedHandler` per connection for `runner`'s application (after `runner.setup()`)."""
    server = runner.server
    assert server is not None, "runner.setup() first"
    loop = asyncio.get_running_loop()
    return lambda: GuardedHandler(
        server,
        loop=loop,
        head_timeout_s=deadlines.header_s,
        head_bytes=deadlines.head_bytes,
        keepalive_timeout=deadlines.keepalive_s,
        access_log_class=JsonAccessLogger,
        access_log=access_logger() if access_log else None,
        auto_decompress=False,  # see clickbus.edge.body: compressed bodies are refused, never inflated
    )


async def listen(runner: web.AppRunner, where: socket.socket | HostPort, edge: EdgeConfig) -> asyncio.Server:
    """Accept connections for `runner`'s app on a listening socket (see `clickbus.edge.sockets`), or on an address."""
    factory = handler_factory(runner, Deadlines.of(edge), access_log=edge.access_log)
    sock = where if isinstance(where, socket.socket) else bind(where, "address")[0][0]
    return await asyncio.get_running_loop().create_server(factory, sock=sock, backlog=BACKLOG)


def bound(server: asyncio.Server) -> str:
    """The address `server` listens on, as host:port."""
    host, port = server.sockets[0].getsockname()[:2]
    return str(HostPort(host, port))
