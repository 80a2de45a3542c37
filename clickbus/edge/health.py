"""Liveness and readiness: terse on the public listener, with the reasons on the internal one.

Strangers learn only `ok` or `unavailable` (an errno text or a path is for operators); the internal
listener's `/readyz` says why, and lists the background tasks that have failed (see `clickbus.tasks`).
"""

from __future__ import annotations

from aiohttp import web

from clickbus import tasks
from clickbus.edge.appkeys import DRAINING, LOG

routes = web.RouteTableDef()
admin_routes = web.RouteTableDef()


@routes.get("/healthz")
@admin_routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """Alive: the process answers."""
    return web.json_response({"status": "ok"})


def _unready(app: web.Application) -> str | None:
    """Why the edge cannot take clicks now, or None when it can."""
    if app[DRAINING].is_set():
        return "shutting down"
    health = app[LOG].health
    return None if health.ready else health.reason


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Ready: the log accepts writes and the process is not shutting down (no reason given)."""
    if _unready(request.app) is not None:
        return web.json_response({"status": "unavailable"}, status=503)
    return web.json_response({"status": "ok"})


@admin_routes.get("/readyz")
async def admin_readyz(request: web.Request) -> web.Response:
    """Ready or not, why not, what an operator should know (records lost to corruption), and failed tasks."""
    reason = _unready(request.app)
    body: dict[str, object] = {"status": "ok"} if reason is None else {"status": "unavailable", "reason": reason}
    if warnings := request.app[LOG].health.warnings:  # still ready when the log writes
        body["warnings"] = list(warnings)
    failed = tasks.failures()
    if failed:
        body["tasks"] = [state.view() for state in failed]
    return web.json_response(body, status=200 if reason is None else 503)
