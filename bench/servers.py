"""The bare aiohttp baselines the HTTP benchmarks compare the clickbus edge against.

`python -m bench.servers bare --config PATH` serves, on uvloop at the config's `edge.listen`,
handlers that do only what any aiohttp server must for each route, as the floor an aiohttp
redirector can reach: a 302 for `/ck/{token}`, a JSON-parsing 202 for the beacon, and the
same 43-byte GIF the edge answers for `/i/{token}` (and `/readyz`).
"""

from __future__ import annotations

import argparse

import orjson
from aiohttp import web

from clickbus import config as configuration
from clickbus.edge.pixel import GIF
from clickbus.runtime import new_loop


async def _redirect(request: web.Request) -> web.Response:
    return web.Response(status=302, headers={"Location": "https://shop.example/landing", "Cache-Control": "no-store"})


_ACCEPTED = orjson.dumps({"messages": ["click will be processed soon"]})


async def _beacon(request: web.Request) -> web.Response:
    orjson.loads(await request.read())
    return web.Response(body=_ACCEPTED, status=202, content_type="application/json")


async def _pixel(request: web.Request) -> web.Response:
    return web.Response(body=GIF, content_type="image/gif", headers={"Cache-Control": "no-store"})


async def _ready(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def bare_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/ck/{token}", _redirect)
    app.router.add_get("/i/{token}", _pixel)
    app.router.add_get("/readyz", _ready)
    app.router.add_post("/v1/beacon/click/{ad_id}", _beacon)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.servers", description=__doc__)
    parser.add_argument("kind", choices=["bare"])
    parser.add_argument("--config", required=True, help="TOML configuration: its edge.listen is served")
    listen = configuration.load(parser.parse_args().config, env={}).edge.listen
    web.run_app(bare_app(), host=listen.host, port=listen.port, access_log=None, print=None, loop=new_loop())


if __name__ == "__main__":
    main()
