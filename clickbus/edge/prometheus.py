"""`GET /metrics`: the Prometheus text exposition of every process of the service."""

from __future__ import annotations

import asyncio

from aiohttp import web

from clickbus.edge.appkeys import METRICS
from clickbus.metrics import render

routes = web.RouteTableDef()


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus metrics (text format); with several workers, their samples summed."""
    body, content_type = await asyncio.to_thread(render, request.app[METRICS])
    return web.Response(body=body, headers={"Content-Type": content_type, "Cache-Control": "no-store"})
