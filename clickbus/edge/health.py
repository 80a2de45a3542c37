"""Liveness and readiness."""

from __future__ import annotations

from aiohttp import web

from clickbus.edge.appkeys import DRAINING, LOG

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """Alive: the process answers."""
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Ready: the log accepts writes and the process is not shutting down."""
    if request.app[DRAINING].is_set():
        return web.json_response({"status": "unavailable", "reason": "shutting down"}, status=503)
    health = request.app[LOG].health
    if not health.ready:
        return web.json_response({"status": "unavailable", "reason": health.reason}, status=503)
    if health.warnings:  # still ready (the log writes), but an operator should know: e.g. records lost to corruption
        return web.json_response({"status": "ok", "warnings": list(health.warnings)})
    return web.json_response({"status": "ok"})
