"""aiohttp internals clickbus relies on. Checked against aiohttp 3.14.5.

- `RequestHandler._request_count`: how many request heads a connection's parser has produced. The head
  deadline (`clickbus.edge.connections`) ends when it moves: aiohttp has no hook for "a head is parsed"
  that runs in step with the parser (the application sees the request a loop iteration later).
- `StreamResponse._prepare_headers`: where aiohttp adds its `Server` header. `on_response_prepare` removes
  it from the applications' answers, but errors aiohttp answers before any application runs (a malformed
  request) have no such signal; `BareResponse` removes it right after it is added.
"""

from __future__ import annotations

from aiohttp import hdrs, web
from aiohttp.web_protocol import RequestHandler

CHECKED_VERSION = "3.14.5"


def heads_parsed(handler: RequestHandler) -> int:
    """How many request heads `handler`'s connection has delivered so far."""
    count: int = handler._request_count
    return count


class BareResponse(web.Response):
    """A response without aiohttp's `Server` header."""

    async def _prepare_headers(self) -> None:
        await super()._prepare_headers()
        self.headers.popall(hdrs.SERVER, None)
