"""`POST /v1/insert`: serve-time insertion over HTTP.

`routes` serve it on the internal listener, to whoever can reach that address. `keyed_routes`
serve it on the public listener, to ad servers holding an insert key (`Authorization: Bearer`):
`401` with the same body whatever is wrong with the key, `403` when the key may not mint
tokens for the requested member. Without insert keys the public listener has no such route.

Insertion is linear in the markup, but a large creative with thousands of links still
signs thousands of tokens: markups over `INLINE_MARKUP_CHARS` are inserted on one
worker thread, so the event loop keeps answering clicks meanwhile (the interpreter
switches threads every few milliseconds) and at most one large insertion per listener
runs at once. Each application serving insertion starts that thread in its cleanup
context (`insertion_thread`) and stops it there within `edge.shutdown_timeout_s`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
from aiohttp import hdrs, web

from clickbus.creative import Inserter, Insertion
from clickbus.edge.apikeys import authorization
from clickbus.edge.appkeys import CONFIG, INSERT_KEYS, INSERT_THREAD, INSERTER, METRICS
from clickbus.edge.body import read_json
from clickbus.errors import BodyError, InsertRequestError
from clickbus.hosts import redirect_host_problem
from clickbus.iso3166 import ALPHA_2
from clickbus.landing import landing_problems
from clickbus.tokens import MAX_PLACEMENT_CHARS, AdContext

logger = logging.getLogger(__name__)

routes = web.RouteTableDef()
keyed_routes = web.RouteTableDef()

PATH = "/v1/insert"

_U64 = 2**64 - 1
_U32 = 2**32 - 1
_INT_FIELDS = {
    "auction_id_64": _U64,
    "member_id": _U32,
    "user_id_64": _U64,
    "creative_id": _U64,
    "pos": 0xFFFF,
    "campaign_id": _U32,
    "publisher_id": _U32,
}
_STR_FIELDS = ("custom_notify_data", "userdata_json")
MAX_HOSTS = 16
INLINE_MARKUP_CHARS = 16 * 1024


def _problem(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message}


def _int_field(auction: dict[str, Any], name: str, top: int, problems: list[dict[str, str]]) -> int:
    value = auction.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
        problems.append(_problem(f"auction.{name}", f"expected an integer from 0 to {top}"))
        return 0
    return value


def _hosts(value: Any, problems: list[dict[str, str]], *, allow_private: bool) -> tuple[str, ...]:
    ok = isinstance(value, list) and len(value) <= MAX_HOSTS and all(isinstance(h, str) for h in value)
    if not ok:
        problems.append(_problem("auction.redirect_hosts", f"expected at most {MAX_HOSTS} host names"))
        return ()
    hosts = tuple(h.lower() for h in value)
    for host in hosts:
        if (problem := redirect_host_problem(host, allow_private=allow_private)) is not None:
            problems.append(_problem("auction.redirect_hosts", f"{host[:100]!r} {problem}"))
    return hosts


def _dimension_strings(auction: dict[str, Any], problems: list[dict[str, str]]) -> tuple[str, str]:
    """`placement` (at most 64 characters) and `country` (ISO 3166-1 alpha-2, as the server API's `location`)."""
    placement = auction.get("placement", "")
    if not isinstance(placement, str) or len(placement) > MAX_PLACEMENT_CHARS:
        problems.append(_problem("auction.placement", f"expected a string of at most {MAX_PLACEMENT_CHARS} characters"))
        placement = ""
    country = auction.get("country", "")
    if not isinstance(country, str) or (country and country not in ALPHA_2):
        problems.append(_problem("auction.country", "expected an ISO 3166-1 alpha-2 country code (US, GB, FR)"))
        country = ""
    return placement, country


def parse_insert(body: Any, *, allow_private_landings: bool = False) -> tuple[str, AdContext, bool]:
    """Markup, ad context and wrap option from a request body; raise `InsertRequestError` with every error."""
    problems: list[dict[str, str]] = []
    if not isinstance(body, dict):
        raise InsertRequestError([_problem("", "expected a JSON object")])
    markup = body.get("markup")
    if not isinstance(markup, str):
        problems.append(_problem("markup", "required string"))
    landing = body.get("landing_url", "")
    if not isinstance(landing, str):
        problems.append(_problem("landing_url", "expected a string"))
    elif landing:
        problems += [
            _problem("landing_url", p) for p in landing_problems(landing, allow_private=allow_private_landings)
        ]
    wrap = body.get("wrap_links", False)
    if not isinstance(wrap, bool):
        problems.append(_problem("wrap_links", "expected a boolean"))
    auction = body.get("auction")
    if not isinstance(auction, dict):
        problems.append(_problem("auction", "required object"))
        auction = {}
    elif "member_id" not in auction:
        problems.append(_problem("auction.member_id", "required"))
    ints = {name: _int_field(auction, name, top, problems) for name, top in _INT_FIELDS.items()}
    strings = {name: auction.get(name, "") for name in _STR_FIELDS}
    problems += [_problem(f"auction.{k}", "expected a string") for k, v in strings.items() if not isinstance(v, str)]
    test = auction.get("test", False)
    if not isinstance(test, bool):
        problems.append(_problem("auction.test", "expected a boolean"))
    hosts = (
        _hosts(auction["redirect_hosts"], problems, allow_private=allow_private_landings)
        if "redirect_hosts" in auction
        else ()
    )
    placement, country = _dimension_strings(auction, problems)
    if problems:
        raise InsertRequestError(problems)
    ad = AdContext(
        member_id=ints["member_id"],
        auction_id_64=ints["auction_id_64"],
        user_id_64=ints["user_id_64"],
        creative_id=ints["creative_id"],
        pos=ints["pos"],
        landing_url=landing,
        custom_notify_data=strings["custom_notify_data"],
        userdata_json=strings["userdata_json"],
        test=test,
        redirect_hosts=hosts,
        campaign_id=ints["campaign_id"],
        placement=placement,
        publisher_id=ints["publisher_id"],
        country=country,
    )
    return str(markup), ad, bool(wrap)


@routes.post(PATH)
async def insert(request: web.Request) -> web.Response:
    """Insert signed tracking URLs into a creative."""
    return await _answer(request, members=())


@keyed_routes.post(PATH)
async def keyed_insert(request: web.Request) -> web.Response:
    """Insertion for an ad server holding an insert key."""
    key = request.app[INSERT_KEYS].identify(authorization(request.headers))
    if key is None:
        request.app[METRICS].insertion("unauthorized")
        return _refusal(401, "", "a valid insert key is required", {hdrs.WWW_AUTHENTICATE: "Bearer"})
    return await _answer(request, members=key.members)


async def _answer(request: web.Request, members: tuple[int, ...]) -> web.Response:
    """Parse, check the member against `members` (empty: any), insert."""
    try:
        allow_private = request.app[CONFIG].edge.allow_private_landings
        markup, ad, wrap = parse_insert(await read_json(request), allow_private_landings=allow_private)
        if members and ad.member_id not in members:
            request.app[METRICS].insertion("forbidden")
            return _refusal(403, "auction.member_id", f"this insert key may not insert for member {ad.member_id}")
        done = await _insert(request.app, markup, ad, wrap)
        check_url_length(done, ad, request.app[CONFIG].edge.max_url_bytes)
    except BodyError as exc:
        request.app[METRICS].insertion("bad_body")
        return _refusal(exc.status, "", exc.message)
    except InsertRequestError as exc:
        request.app[METRICS].insertion("invalid")
        return web.json_response({"errors": exc.problems}, status=422, dumps=_dumps)
    request.app[METRICS].insertion("ok")
    body: dict[str, Any] = {"markup": done.markup, "click_url": done.click_url, "impression_url": done.impression_url}
    body["beacons"] = {"click": done.beacon_click_url, "impression": done.beacon_impression_url}
    return web.json_response(body, dumps=_dumps)


def _refusal(status: int, field: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"errors": [_problem(field, message)]}, status=status, headers=headers, dumps=_dumps)


async def _insert(app: web.Application, markup: str, ad: AdContext, wrap: bool) -> Insertion:
    inserter: Inserter = app[INSERTER]
    if len(markup) <= INLINE_MARKUP_CHARS:
        return inserter.insert(markup, ad, wrap_links=wrap)
    call = functools.partial(inserter.insert, markup, ad, wrap_links=wrap)
    return await asyncio.get_running_loop().run_in_executor(app[INSERT_THREAD], call)


async def insertion_thread(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: the thread for large insertions (its queue is bounded by the open requests), stopped in time.

    The runner has already waited for the requests in flight, so the thread is normally idle; an
    insertion still running (linear in at most `edge.max_body_bytes`) gets `edge.shutdown_timeout_s`.
    """
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickbus-insert")
    app[INSERT_THREAD] = pool
    yield
    stopping = asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)
    try:
        await asyncio.wait_for(stopping, app[CONFIG].edge.shutdown_timeout_s)
    except TimeoutError:
        logger.error("the insertion thread did not stop within edge.shutdown_timeout_s")


def check_url_length(done: Insertion, ad: AdContext, limit: int) -> None:
    """Raise `InsertRequestError` naming the longest context field when a minted URL is over `limit` bytes."""
    if done.longest_url <= limit:
        return
    sizes = {  # the context fields that make a token long; on a tie, the first is named
        "auction.userdata_json": len(ad.userdata_json.encode()),
        "auction.custom_notify_data": len(ad.custom_notify_data.encode()),
        "landing_url": len(ad.landing_url.encode()),
        "auction.redirect_hosts": sum(len(h) for h in ad.redirect_hosts),
    }
    field = max(sizes, key=sizes.__getitem__)
    message = f"makes a tracking URL of {done.longest_url} bytes, over the {limit} allowed (edge.max_url_bytes)"
    raise InsertRequestError([_problem(field, message)])


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()
