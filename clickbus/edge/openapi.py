"""`GET /openapi.json`: the OpenAPI 3.1 description of the edge, kept in `clickbus/openapi.json`."""

from __future__ import annotations

from functools import cache
from importlib import resources

import orjson
from aiohttp import web

from clickbus import __version__

SPEC_FILE = "openapi.json"
routes = web.RouteTableDef()


@cache
def spec_bytes() -> bytes:
    """The OpenAPI document as shipped with the package, its `info.version` the package's version."""
    spec = orjson.loads(resources.files("clickbus").joinpath(SPEC_FILE).read_bytes())
    spec["info"]["version"] = __version__
    return orjson.dumps(spec)


@routes.get("/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI description of every endpoint of the edge."""
    return web.Response(body=spec_bytes(), content_type="application/json")
