"""Header bytes that are not UTF-8, and long headers, on every route that records: the click still counts.

aiohttp hands such bytes on as lone surrogates, which orjson refuses; before the fix each of these
requests was a 500 with nothing recorded. Sent over a raw socket, since HTTP clients refuse to send them.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from clickbus.edge.client import MAX_HEADER_CHARS
from clickbus.log import EmbeddedLog, Topic
from tests.edge.publisher_support import API_KEY, CAMPAIGN, insertion, path_of, publisher_config
from tests.support.edgeapp import EdgeClient
from tests.support.records import records

__all__ = ["publisher_config"]  # the `config` fixture: a campaign and API keys

SERVER_BODY = b'{"campaignId": %d, "placement": "header_banner"}' % CAMPAIGN
# (route, status, topic); the paths come from a real insertion.
ROUTES = [
    ("click", 302, Topic.CLICKS),
    ("impression", 200, Topic.IMPRESSIONS),
    ("beacon click", 202, Topic.CLICKS),
    ("beacon impression", 202, Topic.IMPRESSIONS),
    ("server click", 200, Topic.CLICKS),
]
HEADERS = [
    (b"User-Agent", b"Mozilla/5.0 caf\xe9", "user_agent", "Mozilla/5.0 caf\ufffd"),
    (b"Referer", b"https://news.example/\xff", "referer_url", "https://news.example/\ufffd"),
    (b"User-Agent", b"\xc3\x28 \xed\xa0\x80 \xf0\x9f\x98", "user_agent", "\ufffd( \ufffd\ufffd\ufffd \ufffd"),
    (
        b"User-Agent",
        "caf\u00e9 \u202e".encode() + b"u" * 8000,
        "user_agent",
        "caf\u00e9 \u202e" + "u" * (MAX_HEADER_CHARS - 6),
    ),
]


def _request(route: str, urls: dict[str, Any], header: bytes) -> bytes:
    json_body = b'{"user_id":"u"}'
    if route == "server click":
        path = b"/api/v1/campaigns/click"
        tail = b"Authorization: Bearer " + API_KEY.encode() + b"\r\n"
        body = SERVER_BODY
    else:
        url = {"click": urls["click_url"], "impression": urls["impression_url"]}.get(route)
        url = url or urls["beacons"][route.split()[1]]
        path, tail, body = path_of(url).encode(), b"", json_body
    method = b"GET" if route in ("click", "impression") else b"POST"
    if method == b"POST":
        tail += b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
    else:
        body = b""
    return (
        method
        + b" "
        + path
        + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        + header
        + b"\r\n"
        + tail
        + b"\r\n"
        + body
    )


async def _send(client: EdgeClient, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    try:
        writer.write(payload)
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


@pytest.mark.parametrize(("route", "status", "topic"), ROUTES)
@pytest.mark.parametrize(("name", "value", "field", "recorded"), HEADERS)
async def test_header_bytes_that_are_not_utf8_are_recorded_replaced(
    client: EdgeClient,
    log: EmbeddedLog,
    route: str,
    status: int,
    topic: Topic,
    name: bytes,
    value: bytes,
    field: str,
    recorded: str,
) -> None:
    urls = await insertion(client)
    answer = await _send(client, _request(route, urls, name + b": " + value))
    assert answer.startswith(b"HTTP/1.1 %d " % status), answer[:300]
    (record,) = await records(log, topic)
    server_referer = route == "server click" and field == "referer_url"  # the server click API records no referer
    assert record[field] == ("" if server_referer else recorded)
