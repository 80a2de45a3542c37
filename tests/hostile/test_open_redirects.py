"""Open redirects: every trick of the corpus, appended to a signed click (`?r=`) and as a landing to sign.

A `302` must go where a browser and a reader agree it goes: for appended destinations, a signed host
(`shop.example` or below) as a WHATWG parser reads the `Location`; for landings, the host the landing
spells out. Every `Location` is printable ASCII.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import quote

import aiohttp
import orjson

from tests.hostile.corpus import CORPUS, TRICKS
from tests.hostile.harness import (
    Answer,
    Tally,
    browser_host,
    click_path,
    exchange,
    fetch,
    insert_url,
    run_all,
    said_host,
    session,
    to_signed_host,
)
from tests.support.service import Service

ENCODINGS: dict[str, Callable[[str], str]] = {
    "encoded": lambda url: quote(url, safe=""),
    "partly encoded": lambda url: quote(url, safe=":/?#[]@!$&'()*+,;="),
    "encoded twice": lambda url: quote(quote(url, safe=""), safe=""),
}


def printable(location: str) -> bool:
    return all(0x21 <= ord(c) < 0x7F for c in location)


def printable_to_signed_host(location: str) -> bool:
    return printable(location) and to_signed_host(location)


def where_it_says(location: str) -> bool:
    return printable(location) and browser_host(location) is not None and browser_host(location) == said_host(location)


async def test_appended_destinations_go_only_to_signed_hosts(service: Service) -> None:
    tally = Tally("open redirect ?r=", judge=printable_to_signed_host)
    path = click_path(service)

    def attempt(client: aiohttp.ClientSession, trick: str, encoding: str) -> Callable[[], Awaitable[None]]:
        async def go() -> None:
            answer = await fetch(client, "GET", f"{service.url}{path}?r={ENCODINGS[encoding](trick)}")
            tally.count(answer, f"{encoding} {trick!r}", expected=(302,))

        return go

    async with session() as client:
        await run_all(attempt(client, trick, encoding) for trick in CORPUS for encoding in ENCODINGS)
    tally.report()
    assert tally.attempts >= 300 and len(CORPUS) >= 100 and len(TRICKS) >= 8


async def test_landings_are_signed_only_where_they_say(service: Service) -> None:
    tally = Tally("open redirect landing hosts", judge=where_it_says)

    def attempt(client: aiohttp.ClientSession, body: Mapping[str, object], what: str) -> Callable[[], Awaitable[None]]:
        async def go() -> None:
            answer = await fetch(client, "POST", insert_url(service), json=body)
            tally.count(answer, f"insert {what}", expected=(200, 422))
            if answer.status == 200:
                for url in _click_urls(answer):
                    tally.count(await fetch(client, "GET", url), f"click {what}", expected=(302,))

        return go

    bodies = [
        (body, f"{shape} {trick!r}")
        for trick in CORPUS
        for shape, body in {
            "landing_url": {"markup": "${CLICK_URL}", "landing_url": trick, "auction": {"member_id": 13}},
            "${CLICK_URL}": {"markup": f'<a href="${{CLICK_URL}}{trick}">x</a>', "auction": {"member_id": 13}},
        }.items()
    ]
    async with session() as client:
        await run_all(attempt(client, body, what) for body, what in bodies)
    tally.report()


def _click_urls(answer: Answer) -> list[str]:
    """The click URLs in an accepted insertion's markup."""
    markup: str = orjson.loads(answer.body)["markup"]
    return re.findall(r"http://[^\"<>\s]*/ck/[\w-]+", markup)


async def test_allowed_appended_destination_is_followed(service: Service) -> None:
    async with session() as client:
        deep = quote("https://shop.example/deep", safe="")
        answer = await fetch(client, "GET", f"{service.url}{click_path(service)}?r={deep}")
    assert (answer.status, answer.location) == (302, "https://shop.example/deep")


async def test_encoded_crlf_stays_encoded(service: Service) -> None:
    appended = "https://shop.example/%0d%0aSet-Cookie:%20a=b"
    request = f"GET {click_path(service)}?r={quote(appended)} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    answer: Answer = await exchange(service.port, request.encode())
    assert b"\r\nSet-Cookie" not in answer.raw
    assert (answer.status, answer.location) == (302, appended)
