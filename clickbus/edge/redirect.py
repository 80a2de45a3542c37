"""`GET /ck/{token}`: record the click, then 302 to the signed landing page."""

from __future__ import annotations

import time

from aiohttp import web

from clickbus.creative import REDIRECT_PARAM
from clickbus.edge.appkeys import CONFIG, KEYRING, METRICS
from clickbus.edge.client import client_of
from clickbus.edge.events import click_record, record
from clickbus.errors import TokenError
from clickbus.landing import host_allowed, landing_problems, location_header
from clickbus.records import Source
from clickbus.tokens import Token

routes = web.RouteTableDef()

_NO_STORE = "no-store"


def bad_token() -> web.Response:
    return web.Response(status=400, text="invalid click token\n", headers={"Cache-Control": _NO_STORE})


def destination(token: Token, appended: str | None, *, allow_private: bool = False) -> str:
    """The appended destination if the token allows its host, else the signed landing."""
    if appended and host_allowed(appended, token.ad.redirect_hosts, allow_private=allow_private):
        return appended
    return token.ad.landing_url


@routes.get("/ck/{token}")
async def click(request: web.Request) -> web.Response:
    """Redirect a browser that followed a tracking URL, after its click is durable."""
    started = time.perf_counter()
    response = await _answer(request)
    request.app[METRICS].redirect(response.status, time.perf_counter() - started)
    return response


async def _answer(request: web.Request) -> web.Response:
    try:
        token = request.app[KEYRING].verify(request.match_info["token"])
    except TokenError:
        return bad_token()
    edge = request.app[CONFIG].edge
    location = destination(token, request.query.get(REDIRECT_PARAM), allow_private=edge.allow_private_landings)
    if landing_problems(location, allow_private=edge.allow_private_landings):  # signed under an older, looser policy
        return bad_token()
    header = location_header(location)  # what the browser is sent is what the record says it was sent
    if request.method != "HEAD":  # HEAD is a link checker, never a click
        client = client_of(request, trust_forwarded=edge.trust_forwarded)
        event = click_record(token, client, source=Source.REDIRECT, landing=header, now=time.time())
        if not await record(request.app, event):
            return web.Response(status=503, text="click not recorded, try again\n", headers={"Retry-After": "1"})
    return web.Response(status=302, headers={"Location": header, "Cache-Control": _NO_STORE})
