"""`GET /i/{token}`: the impression pixel, for creatives that cannot run script.

Two ways in, one outcome (`impression`): the router's handler (`pixel`) and the thin path's
(`thin_pixel`, see `clickbus.edge.thin`), which writes the same answers as prepared bytes.
"""

from __future__ import annotations

import time

from aiohttp import web

from clickbus.creative import IMPRESSION_PATH
from clickbus.edge.appkeys import CONFIG, KEYRING
from clickbus.edge.client import client_of
from clickbus.edge.events import impression_record, record
from clickbus.edge.replies import Reply, Written
from clickbus.errors import TokenError
from clickbus.records import Source

routes = web.RouteTableDef()

# The smallest transparent 1x1 GIF89a (43 bytes).
GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00"
    b"!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
_NO_STORE = {"Cache-Control": "no-store"}
_BAD_TOKEN = "invalid impression token\n"
_NOT_RECORDED = "impression not recorded, try again\n"
_TEXT = "text/plain; charset=utf-8"  # what aiohttp writes for `text=`
SEEN, BAD_TOKEN, NOT_RECORDED = 200, 400, 503
REPLIES = {
    SEEN: Reply(200, [("Cache-Control", "no-store"), ("Content-Type", "image/gif")], GIF),
    BAD_TOKEN: Reply(400, [("Cache-Control", "no-store"), ("Content-Type", _TEXT)], _BAD_TOKEN.encode()),
    NOT_RECORDED: Reply(503, [("Retry-After", "1"), ("Content-Type", _TEXT)], _NOT_RECORDED.encode()),
}


@routes.get(IMPRESSION_PATH + "{token}")
async def pixel(request: web.Request) -> web.Response:
    """Record an impression (not for HEAD: that is a checker, not a view) and answer a 1x1 GIF."""
    outcome = await impression(request.app, request, request.match_info["token"])
    if outcome == BAD_TOKEN:
        return web.Response(status=400, text=_BAD_TOKEN, headers=_NO_STORE)
    if outcome == NOT_RECORDED:
        return web.Response(status=503, text=_NOT_RECORDED, headers={"Retry-After": "1"})
    return web.Response(body=GIF, content_type="image/gif", headers=_NO_STORE)


async def thin_pixel(app: web.Application, request: web.Request, text: str, query: bool) -> Written:
    """`pixel` on the thin path: the same outcome, written as prepared bytes."""
    return REPLIES[await impression(app, request, text)].written(request)


async def impression(app: web.Application, request: web.Request, text: str) -> int:
    """`SEEN` once the impression is recorded (or at once for HEAD); else `BAD_TOKEN` or `NOT_RECORDED`."""
    try:
        token = app[KEYRING].verify(text)
    except TokenError:
        return BAD_TOKEN
    if request.method != "HEAD":
        client = client_of(request, trust_forwarded=app[CONFIG].edge.trust_forwarded, app=app)
        event = impression_record(token, client, source=Source.PIXEL, now=time.time())
        if not await record(app, event):
            return NOT_RECORDED
    return SEEN
