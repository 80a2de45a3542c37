"""`GET /ck/{token}`: record the click, then 302 to the signed landing page.

Two ways in, one outcome (`landing`): the router's handler (`click`), and the thin path's
(`thin_click`, see `clickbus.edge.thin`), which writes the same answers as prepared bytes.
"""

from __future__ import annotations

import time

from aiohttp import web

from clickbus.creative import REDIRECT_PARAM
from clickbus.edge.appkeys import CONFIG, KEYRING, METRICS
from clickbus.edge.client import client_of
from clickbus.edge.events import click_record, record
from clickbus.edge.replies import Reply, Written
from clickbus.errors import TokenError
from clickbus.landing import host_allowed, landing_problems, location_header
from clickbus.records import Source
from clickbus.tokens import Token

routes = web.RouteTableDef()

_NO_STORE = "no-store"
_BAD_TOKEN = "invalid click token\n"
_NOT_RECORDED = "click not recorded, try again\n"
_TEXT = "text/plain; charset=utf-8"  # what aiohttp writes for `text=`
BAD_TOKEN = 400
NOT_RECORDED = 503
FOUND_REPLY = Reply(302, [("Cache-Control", _NO_STORE)], location=True)
REFUSALS = {
    BAD_TOKEN: Reply(400, [("Cache-Control", _NO_STORE), ("Content-Type", _TEXT)], _BAD_TOKEN.encode()),
    NOT_RECORDED: Reply(503, [("Retry-After", "1"), ("Content-Type", _TEXT)], _NOT_RECORDED.encode()),
}


def bad_token() -> web.Response:
    return web.Response(status=400, text=_BAD_TOKEN, headers={"Cache-Control": _NO_STORE})


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
    outcome = await landing(request.app, request, request.match_info["token"], request.query.get(REDIRECT_PARAM))
    if outcome == BAD_TOKEN:
        return bad_token()
    if outcome == NOT_RECORDED:
        return web.Response(status=503, text=_NOT_RECORDED, headers={"Retry-After": "1"})
    assert isinstance(outcome, str)
    return web.Response(status=302, headers={"Location": outcome, "Cache-Control": _NO_STORE})


async def thin_click(app: web.Application, request: web.Request, text: str, query: bool) -> Written:
    """`click` on the thin path: the same outcome and metrics, written as prepared bytes."""
    started = time.perf_counter()
    outcome = await landing(app, request, text, request.query.get(REDIRECT_PARAM) if query else None)
    written = FOUND_REPLY.written(request, outcome) if isinstance(outcome, str) else REFUSALS[outcome].written(request)
    app[METRICS].redirect(written.status, time.perf_counter() - started)
    return written


async def landing(app: web.Application, request: web.Request, text: str, appended: str | None) -> str | int:
    """The `Location` of the redirect, once the click is recorded; else `BAD_TOKEN` or `NOT_RECORDED`."""
    try:
        token = app[KEYRING].verify(text)
    except TokenError:
        return BAD_TOKEN
    edge = app[CONFIG].edge
    location = destination(token, appended, allow_private=edge.allow_private_landings)
    if landing_problems(location, allow_private=edge.allow_private_landings):  # signed under an older, looser policy
        return BAD_TOKEN
    header = location_header(location)  # what the browser is sent is what the record says it was sent
    if request.method != "HEAD":  # HEAD is a link checker, never a click
        client = client_of(request, trust_forwarded=edge.trust_forwarded, app=app)
        event = click_record(token, client, source=Source.REDIRECT, landing=header, now=time.time())
        if not await record(app, event):
            return NOT_RECORDED
    return header
