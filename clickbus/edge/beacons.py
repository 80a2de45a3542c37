"""VTEX-style beacons: `POST /v1/beacon/click/{ad_id}` and `POST /v1/beacon/impression/{ad_id}`.

The `{ad_id}` is the signed token of the insertion response's `beacons` URLs.
Every answer other than 202 is an array of ajv-shaped error objects (see
`vtex_schema`), so a client parses one error format. Browsers send beacons
cross-origin, so answers allow any origin and preflights are answered.

Two ways in, one outcome (`beacon`): the router's handlers, and the thin path's (`thin_*`, see
`clickbus.edge.thin`), which write the same answers as prepared bytes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from clickbus.creative import BEACON_CLICK_PATH, BEACON_IMPRESSION_PATH
from clickbus.edge.appkeys import CONFIG, KEYRING
from clickbus.edge.body import JSON_TYPE, read_json
from clickbus.edge.client import client_of
from clickbus.edge.events import click_record, impression_record, record
from clickbus.edge.replies import Reply, Written
from clickbus.edge.vtex_schema import POS, Error, error, parse_body, parse_pos
from clickbus.errors import BodyError, TokenError
from clickbus.records import Source

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
_RETRY = {"Retry-After": "1"}


def errors_response(errors: list[Error], status: int, headers: dict[str, str] | None = None) -> web.Response:
    """An array of error objects, as the VTEX API answers."""
    return web.Response(
        body=orjson.dumps(errors), status=status, content_type="application/json", headers={**_CORS, **(headers or {})}
    )


def accepted(kind: str) -> web.Response:
    return web.Response(body=_ACCEPTED[kind], status=202, content_type="application/json", headers=_CORS)


def errors_reply(errors: list[Error], status: int, headers: dict[str, str] | None = None) -> Reply:
    """`errors_response` as a thin-path reply."""
    fields = [*_CORS.items(), *(headers or {}).items(), ("Content-Type", JSON_TYPE)]
    return Reply(status, fields, orjson.dumps(errors))


ACCEPTED_REPLIES = {
    kind: Reply(202, [*_CORS.items(), ("Content-Type", JSON_TYPE)], body) for kind, body in _ACCEPTED.items()
}
BAD_AD_ID_REPLY = errors_reply([BAD_AD_ID], 400)
NOT_RECORDED_REPLY = errors_reply([NOT_RECORDED], 503, _RETRY)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a beacon was not recorded: its errors, status and extra headers."""

    errors: list[Error]
    status: int
    headers: dict[str, str] = field(default_factory=dict)


_BAD_AD_ID = Refusal([BAD_AD_ID], 400)
_NOT_RECORDED = Refusal([NOT_RECORDED], 503, _RETRY)


async def beacon(
    app: web.Application, request: web.Request, kind: str, text: str, pos_values: list[str]
) -> Refusal | None:
    """Record the beacon of `kind` for the token `text`, at the `pos` query values; None when done, or why not."""
    try:
        token = app[KEYRING].verify(text)
    except TokenError:
        return _BAD_AD_ID
    try:
        raw: Any = await read_json(request, app=app)
    except BodyError as exc:
        return Refusal([error("", "body", exc.message, {}, "#/body")], exc.status)
    edge = app[CONFIG].edge
    pos, pos_errors = parse_pos(pos_values)
    body, body_errors = parse_body(raw, edge.max_text_chars)
    if body is None or pos_errors:
        return Refusal(body_errors + pos_errors, 422)
    client = client_of(request, trust_forwarded=edge.trust_forwarded, app=app)
    now, user, session = time.time(), body.user_id, body.session_id
    if kind == CLICK:
        landing = token.ad.landing_url
        event = click_record(
            token,
            client,
            source=Source.BEACON,
            landing=landing,
            now=now,
            user_id=user,
            session_id=session,
            pos=pos,
        )
    else:
        event = impression_record(
            token, client, source=Source.BEACON, now=now, user_id=user, session_id=session, pos=pos
        )
    if not await record(app, event):
        return _NOT_RECORDED
    return None


@routes.post(BEACON_CLICK_PATH + "{ad_id}")
async def click_beacon(request: web.Request) -> web.Response:
    """Record a click reported by a publisher's front end."""
    return await _beacon(request, CLICK)


@routes.post(BEACON_IMPRESSION_PATH + "{ad_id}")
async def impression_beacon(request: web.Request) -> web.Response:
    """Record an impression reported by a publisher's front end."""
    return await _beacon(request, IMPRESSION)


async def _beacon(request: web.Request, kind: str) -> web.Response:
    refusal = await beacon(request.app, request, kind, request.match_info[AD_ID], request.query.getall(POS, []))
    if refusal is None:
        return accepted(kind)
    return errors_response(refusal.errors, refusal.status, refusal.headers)


async def thin_click_beacon(app: web.Application, request: web.Request, text: str, query: bool) -> Written:
    """`click_beacon` on the thin path: the same outcome, written as prepared bytes."""
    return await _thin_beacon(app, request, CLICK, text, query)


async def thin_impression_beacon(app: web.Application, request: web.Request, text: str, query: bool) -> Written:
    """`impression_beacon` on the thin path: the same outcome, written as prepared bytes."""
    return await _thin_beacon(app, request, IMPRESSION, text, query)


async def _thin_beacon(app: web.Application, request: web.Request, kind: str, text: str, query: bool) -> Written:
    refusal = await beacon(app, request, kind, text, request.query.getall(POS, []) if query else [])
    if refusal is None:
        return ACCEPTED_REPLIES[kind].written(request)
    if refusal is _BAD_AD_ID:
        return BAD_AD_ID_REPLY.written(request)
    if refusal is _NOT_RECORDED:
        return NOT_RECORDED_REPLY.written(request)
    return errors_reply(refusal.errors, refusal.status, refusal.headers).written(request)


@routes.options(BEACON_CLICK_PATH + "{ad_id}")
@routes.options(BEACON_IMPRESSION_PATH + "{ad_id}")
async def preflight(request: web.Request) -> web.Response:
    """CORS preflight: browsers ask before POSTing JSON cross-origin."""
    return web.Response(status=204, headers=_PREFLIGHT)
