"""Reading JSON request bodies: size cap, content type, encoding, arrival time and syntax, each with its own status.

A body must arrive within `edge.body_timeout_s` of the handler asking for it, or the answer is
`408` (and the connection is closed: see `clickbus.edge.connections`).

Bodies are taken as sent: the listeners do not decompress (a 1 MB gzip body of spaces is 1 GiB
of work for the server, and an invalid one was a `500`), so a `Content-Encoding` other than
`identity` is `415`. An object with a name twice is `400`: parsers disagree about which value
wins (orjson keeps the last, many keep the first), so whoever checked the body before the edge
may have read another click than the one the edge would record. A body cut short (the sender
closed or reset the connection, or broke its chunked framing) is `400`, not a handler error: a
stranger hanging up mid-body must not write a traceback into the service's log.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import orjson
from aiohttp import hdrs, web

from clickbus.edge.appkeys import CONFIG
from clickbus.errors import BodyError

JSON_TYPE = "application/json"
IDENTITY = "identity"


class _DuplicateName(ValueError):
    """An object with a name twice."""


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    names = dict(pairs)
    if len(names) != len(pairs):
        raise _DuplicateName
    return names


_NAME_END = re.compile(rb'"[ \t\n\r]*:')


def _name_ends(raw: bytes) -> int:
    """Places where an object name could end: every name does, and so may text inside strings."""
    return len(_NAME_END.findall(raw))


def _names(value: Any) -> int:
    """Names in every object of a parsed document (a repeated name is kept once)."""
    if isinstance(value, dict):
        return len(value) + sum(_names(v) for v in value.values())
    if isinstance(value, list):
        return sum(_names(v) for v in value)
    return 0


def parse_json(raw: bytes) -> Any:
    """`raw` as JSON (orjson's strict grammar), refusing any object with a name twice; raise `BodyError` (400)."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BodyError(400, "body is not valid JSON") from None
    try:
        if _name_ends(raw) == _names(value):
            return value  # as many names as places a name could end: none is repeated
    except RecursionError:  # nesting orjson accepts (up to 1024) can exceed Python's recursion limit
        raise BodyError(400, "body is not valid JSON") from None
    try:
        json.loads(raw, object_pairs_hook=_unique)  # orjson cannot tell duplicates; valid JSON here, so only they fail
    except _DuplicateName:
        raise BodyError(400, "body has an object with a duplicate name") from None
    except (ValueError, RecursionError):  # nesting orjson accepts (up to 1024) can exceed the stdlib's recursion
        raise BodyError(400, "body is not valid JSON") from None
    return value


async def read_json(request: web.Request, *, app: web.Application | None = None) -> Any:
    """The parsed JSON body; raise `BodyError` (413, 415 or 400) when it cannot be had.

    `app` is the request's application, for requests the router did not see (see `clickbus.edge.thin`).
    """
    edge = (request.app if app is None else app)[CONFIG].edge
    limit = edge.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise BodyError(413, f"body larger than {limit} bytes")
    if request.content_type != JSON_TYPE:
        raise BodyError(415, f"content type must be {JSON_TYPE}")
    if request.headers.get(hdrs.CONTENT_ENCODING, IDENTITY).strip().lower() != IDENTITY:
        raise BodyError(415, "content encoding must be identity (send the body uncompressed)")
    try:
        if request.content.is_eof():  # the whole body is here (the usual small beacon): reading it cannot wait
            raw = await request.read()
        else:
            async with asyncio.timeout(edge.body_timeout_s):
                raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise BodyError(413, f"body larger than {limit} bytes") from None
    except TimeoutError:
        raise BodyError(408, f"body not received within {edge.body_timeout_s:g} s") from None
    except (ConnectionError, web.RequestPayloadError):  # the sender closed, reset or broke the framing mid-body
        raise BodyError(400, "body not received whole") from None
    return parse_json(raw)
