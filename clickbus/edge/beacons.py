"""VTEX-style beacons: `POST /v1/beacon/click/{ad_id}` and `POST /v1/beacon/impression/{ad_id}`.

The `{ad_id}` is the signed token of the insertion response's `beacons` URLs.
Every answer other than 202 is an array of ajv-shaped error objects (see
`vtex_schema`), so a client parses one error format. Browsers send beacons
cross-origin, so answers allow any origin and preflights are answered.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiohttp import web

from clickbus.creative import BEACON_CLICK_PATH, BEACON_IMPRESSION_PATH
from clickbus.edge.appkeys import CONFIG, KEYRING
from clickbus.edge.body import read_json
from clickbus.edge.client import client_of
from clickbus.edge.events import click_record, impression_record, record
from clickbus.edge.vtex_schema import POS, BeaconBody, Error, error, parse_body, parse_pos
from clickbus.errors import BodyError, TokenError
from clickbus.records import Source
from clickbus.tokens import Token

routes = web.RouteTableDef()

AD_ID = "ad_id"
CLICK = "click"
IMPRESSION = "impression"
_CORS = {"Access-Control-Allow-Origin": "*"}
_PREFLIGHT = {
    **_CORS,
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "content-type, accept",
    "Access-Control-Max-Age": "86400",
}
_ACCEPTED = {kind: orjson.dumps({"messages": [f"{kind} will be processed soon"]}) for kind in (CLICK, IMPRESSION)}
BAD_AD_ID = error(f"/{AD_ID}", "token", "must be an ad_id issued by this server", {}, f"#/params/{AD_ID}")
NOT_RECORDED = error("", "log", "event not recorded, try again", {}, "")


def errors_response(errors: list[Error], status: int, headers: dict[str, str] | None = None) -> web.Response:
    """An array of error objects, as the VTEX API answers."""
    return web.Response(
        body=orjson.dumps(errors), status=status, content_type="application/json", headers={**_CORS, **(headers or {})}
    )


def accepted(kind: str) -> web.Response:
    return web.Response(body=_ACCEPTED[kind], status=202, content_type="application/json", headers=_CORS)


async def _read(request: web.Request) -> tuple[Token, BeaconBody, int | None] | web.Response:
    """The verified token, body and `pos`, or the error answer."""
    try:
        token = request.app[KEYRING].verify(request.match_info[AD_ID])
    except TokenError:
        return errors_response([BAD_AD_ID], 400)
    try:
        raw: Any = await read_json(request)
    except BodyError as exc:
        return errors_response([error("", "body", exc.message, {}, "#/body")], exc.status)
    pos, pos_errors = parse_pos(request.query.getall(POS, []))
    body, body_errors = parse_body(raw, request.app[CONFIG].edge.max_text_chars)
    if body is None or pos_errors:
        return errors_response(body_errors + pos_errors, 422)
    return token, body, pos


@routes.post(BEACON_CLICK_PATH + "{ad_id}")
async def click_beacon(request: web.Request) -> web.Response:
    """Record a click reported by a publisher's front end."""
    return await _beacon(request, CLICK)


@routes.post(BEACON_IMPRESSION_PATH + "{ad_id}")
async def impression_beacon(request: web.Request) -> web.Response:
    """Record an impression reported by a publisher's front end."""
    return await _beacon(request, IMPRESSION)


async def _beacon(request: web.Request, kind: str) -> web.Response:
    read = await _read(request)
    if isinstance(read, web.Response):
        return read
    token, body, pos = read
    client = client_of(request, trust_forwarded=request.app[CONFIG].edge.trust_forwarded)
    now, user, session = time.time(), body.user_id, body.session_id
    if kind == CLICK:
        landing = token.ad.landing_url
        event = click_record(
            token, client, source=Source.BEACON, landing=landing, now=now, user_id=user, session_id=session, pos=pos
        )
    else:
        event = impression_record(
            token, client, source=Source.BEACON, now=now, user_id=user, session_id=session, pos=pos
        )
    if not await record(request.app, event):
        return errors_response([NOT_RECORDED], 503, {"Retry-After": "1"})
    return accepted(kind)


@routes.options(BEACON_CLICK_PATH + "{ad_id}")
@routes.options(BEACON_IMPRESSION_PATH + "{ad_id}")
async def preflight(request: web.Request) -> web.Response:
    """CORS preflight: browsers ask before POSTing JSON cross-origin."""
    return web.Response(status=204, headers=_PREFLIGHT)
