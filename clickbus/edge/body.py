"""Reading JSON request bodies: size cap, content type, arrival time and syntax, each with its own status.

A body must arrive within `edge.body_timeout_s` of the handler asking for it, or the answer is
`408` (and the connection is closed: see `clickbus.edge.connections`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from clickbus.edge.appkeys import CONFIG
from clickbus.errors import BodyError

JSON_TYPE = "application/json"


async def read_json(request: web.Request) -> Any:
    """The parsed JSON body; raise `BodyError` (413, 415 or 400) when it cannot be had."""
    edge = request.app[CONFIG].edge
    limit = edge.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise BodyError(413, f"body larger than {limit} bytes")
    if request.content_type != JSON_TYPE:
        raise BodyError(415, f"content type must be {JSON_TYPE}")
    try:
        async with asyncio.timeout(edge.body_timeout_s):
            raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise BodyError(413, f"body larger than {limit} bytes") from None
    except TimeoutError:
        raise BodyError(408, f"body not received within {edge.body_timeout_s:g} s") from None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BodyError(400, "body is not valid JSON") from None
