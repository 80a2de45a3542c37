"""`GET /v1/reports` on the internal listener: the report as JSON or CSV, streamed, with no row cap.

The parameters are `clickbus report`'s (see `reports.request`); a bad one is a `400` naming it, a store
that cannot answer a `503` with the reason. The store is read through a connection of this process's
own, never the reporter's writer.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import orjson
from aiohttp import web

from clickbus.edge.appkeys import CONFIG, REPORTS
from clickbus.reports.port import RawRow, StoreUnavailable
from clickbus.reports.render import csv_chunks, json_chunks
from clickbus.reports.request import parse_request
from clickbus.reports.service import open_store
from clickbus.reports.window import QueryError

PATH = "/v1/reports"
CSV = "text/csv"
routes = web.RouteTableDef()


def _error(status: int, message: str) -> web.Response:
    return web.Response(status=status, body=orjson.dumps({"error": message}), content_type="application/json")


@routes.get(PATH)
async def reports(request: web.Request) -> web.StreamResponse:
    """The report the query parameters ask for."""
    config = request.app[CONFIG]
    params = {name: request.query.getall(name) for name in request.query}
    wants_csv = CSV in request.headers.get("Accept", "")
    try:
        asked = parse_request(
            params, retention_months=config.reports.retention_months, default_format="csv" if wants_csv else "json"
        )
        if asked.format == "table":
            raise QueryError("unknown format: table (expected json or csv here)")
    except QueryError as exc:
        return _error(400, str(exc))
    raw = request.app[REPORTS].query(asked.query)
    try:
        first = await anext(raw, None)  # the store answers, or this is a 503 before anything is sent
    except StoreUnavailable as exc:
        return _error(503, str(exc))
    chunks = (csv_chunks if asked.format == "csv" else json_chunks)(asked, _again(first, raw))
    response = web.StreamResponse(headers={"Cache-Control": "no-store"})
    response.content_type = CSV if asked.format == "csv" else "application/json"
    await response.prepare(request)
    async for chunk in chunks:
        await response.write(chunk)
    await response.write_eof()
    return response


async def _again(first: RawRow | None, rest: AsyncIterator[RawRow]) -> AsyncIterator[RawRow]:
    if first is None:
        return
    yield first
    async for row in rest:
        yield row


async def reading(app: web.Application) -> AsyncIterator[None]:
    """A read-only store for the application's life (a connection pool on PostgreSQL; nothing held on SQLite)."""
    store = open_store(app[CONFIG], read_only=True)
    with contextlib.suppress(StoreUnavailable):  # the pool connects at the first query: only a bad DSN fails here
        await store.start()
    app[REPORTS] = store
    yield
    await store.stop()
