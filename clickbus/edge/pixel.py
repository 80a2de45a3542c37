"""`GET /i/{token}`: the impression pixel, for creatives that cannot run script."""

from __future__ import annotations

import time

from aiohttp import web

from clickbus.creative import IMPRESSION_PATH
from clickbus.edge.appkeys import CONFIG, KEYRING
from clickbus.edge.client import client_of
from clickbus.edge.events import impression_record, record
from clickbus.errors import TokenError
from clickbus.records import Source

routes = web.RouteTableDef()

# The smallest transparent 1x1 GIF89a (43 bytes).
GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00"
    b"!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
_NO_STORE = {"Cache-Control": "no-store"}


@routes.get(IMPRESSION_PATH + "{token}")
async def pixel(request: web.Request) -> web.Response:
    """Record an impression (not for HEAD: that is a checker, not a view) and answer a 1x1 GIF."""
    try:
        token = request.app[KEYRING].verify(request.match_info["token"])
    except TokenError:
        return web.Response(status=400, text="invalid impression token\n", headers=_NO_STORE)
    if request.method != "HEAD":
        client = client_of(request, trust_forwarded=request.app[CONFIG].edge.trust_forwarded)
        event = impression_record(token, client, source=Source.PIXEL, now=time.time())
        if not await record(request.app, event):
            return web.Response(status=503, text="impression not recorded, try again\n", headers={"Retry-After": "1"})
    return web.Response(body=GIF, content_type="image/gif", headers=_NO_STORE)
