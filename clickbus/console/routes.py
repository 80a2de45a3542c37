"""The console's routes on the internal listener: the page, its assets, and the live feed as JSON.

Everything the page needs ships in the package (`static/`): no CDN, no build step. The page is
read-only: these routes only answer GETs.
"""

from __future__ import annotations

import asyncio
import time
from functools import cache
from importlib import resources

import orjson
from aiohttp import web

from clickbus.config import Config
from clickbus.console.feed import FeedReader
from clickbus.metrics import Metrics

routes = web.RouteTableDef()

PAGE = "index.html"
# Each asset the page loads, by the name it is served under, with its content type.
ASSETS = {
    "console.js": "text/javascript",
    "console.css": "text/css",
    "uPlot.esm.js": "text/javascript",
    "uPlot.min.css": "text/css",
    "LICENSE.uPlot": "text/plain",
    "favicon.svg": "image/svg+xml",
}
_VENDORED = {"uPlot.esm.js", "uPlot.min.css", "LICENSE.uPlot"}
FEED = web.AppKey("console_feed", FeedReader)
NO_CACHE = {"Cache-Control": "no-cache"}  # revalidated: an upgrade's assets are seen at the next load


def install(app: web.Application, config: Config, metrics: Metrics) -> None:
    """Serve the console on `app` (the internal listener's), reading the feed of the service `config` names.

    What it needs is handed in, not read from the edge's keys: the edge imports the console, never the reverse.
    """
    app[FEED] = FeedReader(config, metrics)
    app.add_routes(routes)


@cache
def asset(name: str) -> bytes:
    """The bytes of a shipped file of the console (`PAGE` or one of `ASSETS`)."""
    folder = resources.files("clickbus.console").joinpath("static")
    return (folder.joinpath("vendor", name) if name in _VENDORED else folder.joinpath(name)).read_bytes()


@routes.get("/")
async def page(request: web.Request) -> web.Response:
    """The console."""
    return web.Response(body=asset(PAGE), content_type="text/html", charset="utf-8", headers=NO_CACHE)


@routes.get("/console/{name}")
async def static(request: web.Request) -> web.Response:
    """One of the console's assets."""
    name = request.match_info["name"]
    if name not in ASSETS:
        raise web.HTTPNotFound()
    return web.Response(body=asset(name), content_type=ASSETS[name], headers=NO_CACHE)


@routes.get("/v1/console/live")
async def live(request: web.Request) -> web.Response:
    """The live view's figures: samples newer than `after` (seconds since the epoch), totals, recent clicks."""
    try:
        after = float(request.query.get("after", "0"))
    except ValueError:
        raise web.HTTPBadRequest(text="after: expected seconds since the epoch") from None
    feed = await asyncio.to_thread(request.app[FEED].read, after)  # a file read, or a sample without a notifier
    body = {
        "now": time.time(),
        "source": feed["source"],
        "written": feed["written"],
        "samples": feed["samples"],
        "latest": feed["latest"],
        "recent": feed["recent"],
    }
    return web.Response(body=orjson.dumps(body), content_type="application/json", headers={"Cache-Control": "no-store"})
