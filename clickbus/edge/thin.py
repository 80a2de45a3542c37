"""The thin path: `/ck/{token}`, `/i/{token}` and the beacons, answered before aiohttp's router and response objects.

Every click pays for what stands between aiohttp's parser and the handler, and between the
handler and the socket: resolving the route, a `Response` and its preparation (headers, the
`on_response_prepare` signal), and the finishing writes. For the four hot routes the
application's front (`clickbus.compat.aiohttp.FrontedApplication`) takes the request straight
to the route's `thin_*` handler, whose answer is bytes prepared once (`clickbus.edge.replies`).

Everything else is aiohttp's as before: its parser, the connection (keep-alive, pipelining in
order, the slow-client deadlines of `clickbus.edge.connections`), the `web.Request` and its body
limits (`clickbus.edge.body`), the access log. The front takes only requests whose route is
certain from the raw path and method alone: a token of URL-safe base64 characters (nothing to
unquote, no dot segment), `GET`/`HEAD` for `/ck` and `/i`, `POST` for the beacons, and no
`Expect` header (aiohttp answers `100 Continue` from the route). Any other request, including
a wrong method, goes to the router and its handlers, which reach the same outcome through the
same functions.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web

from clickbus.compat.aiohttp import Answer
from clickbus.creative import BEACON_CLICK_PATH, BEACON_IMPRESSION_PATH, CLICK_PATH, IMPRESSION_PATH
from clickbus.edge import beacons, pixel, redirect

ThinHandler = Callable[[web.Application, web.Request, str, bool], Awaitable[Answer]]

_TOKEN = re.compile(r"[A-Za-z0-9_-]+")  # what signed tokens are made of (the router would match them as they are)
ROUTES: dict[tuple[str, str], ThinHandler] = {
    (hdrs.METH_GET, CLICK_PATH[:-1]): redirect.thin_click,
    (hdrs.METH_HEAD, CLICK_PATH[:-1]): redirect.thin_click,
    (hdrs.METH_GET, IMPRESSION_PATH[:-1]): pixel.thin_pixel,
    (hdrs.METH_HEAD, IMPRESSION_PATH[:-1]): pixel.thin_pixel,
    (hdrs.METH_POST, BEACON_CLICK_PATH[:-1]): beacons.thin_click_beacon,
    (hdrs.METH_POST, BEACON_IMPRESSION_PATH[:-1]): beacons.thin_impression_beacon,
}


class Thin:
    """The front of the public application: the thin handler's answering of a request, or None for the router."""

    __slots__ = ("_app",)

    def __init__(self, app: web.Application) -> None:
        self._app = app

    def __call__(self, request: web.Request) -> Awaitable[Answer] | None:
        path, mark, _ = request.raw_path.partition("?")
        where, _, token = path.rpartition("/")
        handler = ROUTES.get((request.method, where))
        if handler is None or _TOKEN.fullmatch(token) is None or hdrs.EXPECT in request.headers:
            return None
        return handler(self._app, request, token, bool(mark))
