"""Landings into the visitor's own network, and landings with invisible characters, through a real `clickbus run`.

Private: loopback, private and link-local addresses in every spelling a WHATWG parser normalises,
and `localhost`, are refused at insertion (`422`), when a token signed under an older policy is
clicked (`400`), and as an appended `?r=` destination (the click goes to the signed landing), unless
`edge.allow_private_landings` (development). Invisible: every Unicode format character,
`Default_Ignorable_Code_Point` and `Bidi_Control` character is refused in the same three places.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import aiohttp
import orjson
import pytest

from clickbus.tokens import AdContext
from tests.hostile.harness import (
    LANDING,
    SIGNED_HOST,
    Tally,
    browser_host,
    fetch,
    insert_url,
    inserter,
    serving,
    session,
)
from tests.support.service import Service

PRIVATE = [
    "http://127.0.0.1/",
    "http://127.0.0.1:8081/v1/insert",
    "http://127.255.255.254/",
    "http://[::1]/",
    "http://[0:0:0:0:0:0:0:1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://[::ffff:169.254.169.254]/",
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.1/",
    "http://172.31.255.255/",
    "http://192.168.0.1/",
    "http://100.100.100.200/",
    "http://0.0.0.0/",
    "http://[::]/",
    "http://[fe80::1]/",
    "http://[fd00::1]/",
    "http://localhost/",
    "http://localhost:8080/",
    "http://LocalHost./",
    "http://a.b.localhost/",
    "http://printer.local/",
    "http://metadata.google.internal/",
    "http://intranet/",
    "http://2130706433/",  # spellings a browser reads as 127.0.0.1: refused as not saying what they are
    "http://0x7f.1/",
    "http://0177.0.0.1/",
    "http://127.1/",
    "http://%31%32%37.0.0.1/",
    "http://0x7f000001/",
    "http://\uff11\uff12\uff17.0.0.1/",  # fullwidth digits
]
INVISIBLE = [0x061C, 0x115F, 0x3164, 0xFFA0, 0x034F, 0xE0001, 0xFFF9, 0x200B, 0x2060, 0xFE0F, 0x180E, 0x17B4, 0xE0100]


def invisible_landings() -> list[str]:
    places = (
        "https://shop{c}.example/",
        "https://{c}shop.example/",
        "https://shop.example/p{c}",
        "https://shop.example/?q={c}",
    )
    return [place.format(c=chr(code)) for code in INVISIBLE for place in places]


def shapes(landing: str) -> dict[str, dict[str, object]]:
    """The three ways insertion signs a landing."""
    auction = {"member_id": 13}
    return {
        "landing_url": {"markup": "${CLICK_URL}", "landing_url": landing, "auction": auction},
        "${CLICK_URL}": {"markup": f'<a href="${{CLICK_URL}}{landing}">x</a>', "auction": auction},
        "wrap_links": {
            "markup": f'<a href="{landing}">x</a>',
            "wrap_links": True,
            "landing_url": LANDING,
            "auction": auction,
        },
    }


async def refused_everywhere(service: Service, client: aiohttp.ClientSession, tally: Tally, landing: str) -> None:
    """Insertion `422`; a token minted with it by hand `400`; appended to a token that names its host, not followed."""
    for shape, body in shapes(landing).items():
        tally.count(await fetch(client, "POST", insert_url(service), json=body), f"insert {shape} {landing!r}", (422,))
    minted = inserter(service).click_url(AdContext(member_id=13, landing_url=landing))  # an older, looser policy
    tally.count(await fetch(client, "GET", quote(minted, safe=":/?=&%")), f"click signed {landing!r}", (400,))
    host = browser_host(landing) or ""
    ad = AdContext(member_id=13, landing_url=LANDING, redirect_hosts=(SIGNED_HOST, host.strip("[]"), host))
    appended = f"{inserter(service).click_url(ad)}?r={quote(landing, safe='')}"
    answer = tally.count(await fetch(client, "GET", appended), f"?r= {landing!r}", (302,))
    assert answer.location in (None, LANDING), landing


async def test_private_landings_are_refused(service: Service) -> None:
    tally = Tally("private landings")
    async with session() as client:
        for landing in PRIVATE:
            await refused_everywhere(service, client, tally, landing)
    tally.report()


async def test_invisible_characters_in_landings_are_refused(service: Service) -> None:
    tally = Tally("invisible landing characters")
    async with session() as client:
        for landing in invisible_landings():
            await refused_everywhere(service, client, tally, landing)
    tally.report()


@pytest.fixture(scope="module")
def development(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    yield from serving(tmp_path_factory, "development", edge="allow_private_landings = true\n")


async def test_development_signs_and_follows_private_landings(development: Service) -> None:
    allowed = ("http://127.0.0.1:9/dev", "http://localhost:9/dev")
    tally = Tally("private landings, allowed", judge=lambda location: location.startswith(allowed))
    async with session() as client:
        for landing in allowed:
            body = shapes(landing)["landing_url"]
            answer = tally.count(await fetch(client, "POST", insert_url(development), json=body), landing, (200,))
            click_url: str = orjson.loads(answer.body)["click_url"]
            tally.count(await fetch(client, "GET", click_url), f"click {landing}", (302,))
    tally.report()
