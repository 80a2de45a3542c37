"""Servers the HTTP benchmarks compare: the bare aiohttp baseline and the clickbus edge.

`python -m bench.servers bare PORT` serves a handler that only answers 302 (and
/readyz), on uvloop, as the floor any aiohttp redirector can reach; and a beacon
handler that only parses the JSON body and answers 202.
"""

from __future__ import annotations

import sys

import orjson
from aiohttp import web

from clickbus.runtime import new_loop


async def _redirect(request: web.Request) -> web.Response:
    return web.Response(status=302, headers={"Location": "https://shop.example/landing", "Cache-Control": "no-store"})


_ACCEPTED = orjson.dumps({"messages": ["click will be processed soon"]})


async def _beacon(request: web.Request) -> web.Response:
    orjson.loads(await request.read())
    return web.Response(body=_ACCEPTED, status=202, content_type="application/json")


async def _ready(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def bare_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/ck/{token}", _redirect)
    app.router.add_get("/readyz", _ready)
    app.router.add_post("/v1/beacon/click/{ad_id}", _beacon)
    return app


def main() -> None:
    kind, port = sys.argv[1], int(sys.argv[2])
    if kind != "bare":
        raise SystemExit(f"unknown server {kind!r}")
    web.run_app(bare_app(), host="127.0.0.1", port=port, access_log=None, print=None, loop=new_loop())


if __name__ == "__main__":
    main()
