"""The dedup rule, clause by clause, through the real edge, its in-process notifier and a bidder stub.

Each case inserts ads over `POST /v1/insert`, clicks them as browsers would (the redirect, the VTEX
beacon) from given addresses and user agents, and counts what the bidder received and what the
notifier judged a duplicate. The rule (README, "Deduplication"): per member, user, device and ad,
where the ad is one insertion (auction and creative, or the token itself), the user is the beacon's
`user_id`, else the token's `user_id_64`, else the session, else a keyed hash of the full address.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from clickbus import runtime
from clickbus.edge.appkeys import LOG
from clickbus.log.port import Topic
from clickbus.records import Reason
from tests.notifier import factory as f
from tests.support.bidder import BidderStub
from tests.support.configs import build_config
from tests.support.edgeapp import EdgeClient as Client
from tests.support.edgeapp import admin_client
from tests.support.records import records
from tests.support.waiting import eventually_async

CHROME_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
OFFICE = "198.51.100.7"  # one /24 ...
COLLEAGUE = "198.51.100.8"  # ... two people


@dataclass(frozen=True, slots=True)
class Send:
    """One click: on insertion `ad`, by redirect (`body` None) or beacon (`body` its JSON), from `ip` with `ua`."""

    ad: int = 0
    body: dict[str, str] | None = None
    ip: str = OFFICE
    ua: str = f.BROWSER_UA
    kind: str = "click"


@dataclass(frozen=True, slots=True)
class Case:
    ads: list[dict[str, Any]]
    sends: list[Send]
    delivered: int
    impressions_duplicate: int = 0
    landings: list[str] = field(default_factory=list)


U1, U2 = {"user_id": "u1"}, {"user_id": "u2"}
CASES: dict[str, Case] = {
    "two ads without creative_id, one user, within the hour": Case(
        [{"auction_id_64": 1}, {"auction_id_64": 2}], [Send(0, U1), Send(1, U1)], 2
    ),
    "two ads without auction or creative ids, one user": Case(
        [{}, {}], [Send(0, U1), Send(1, U1)], 2, landings=["https://shop.example/a", "https://shop.example/b"]
    ),
    "one user clicking two impressions of one creative": Case(
        [{"auction_id_64": auction, "creative_id": 5, "user_id_64": 42} for auction in (1, 2)],
        [Send(0), Send(1)],
        2,
    ),
    "two users behind one /24 with the same user agent": Case(
        [{"auction_id_64": 1, "creative_id": 5}], [Send(0, ip=OFFICE), Send(0, ip=COLLEAGUE)], 1 + 1
    ),
    "a true double click on the same token is caught": Case(
        [{"auction_id_64": 1, "creative_id": 5}], [Send(0), Send(0)], 1
    ),
    "a true double click by a known user is caught": Case(
        [{"auction_id_64": 1, "user_id_64": 42}], [Send(0, ip=OFFICE), Send(0, ip=COLLEAGUE)], 1
    ),
    "the beacon's user_id wins over the token's user_id_64": Case(
        [{"auction_id_64": 1, "user_id_64": 42}], [Send(0, U1), Send(0, U2), Send(0, U1, ip=COLLEAGUE)], 2
    ),
    "the session names the user when nothing else does": Case(
        [{"auction_id_64": 1}],
        [Send(0, {"session_id": "s1"}), Send(0, {"session_id": "s2"}), Send(0, {"session_id": "s1"}, ip=COLLEAGUE)],
        2,
    ),
    "the device is the user agent": Case([{"auction_id_64": 1, "user_id_64": 42}], [Send(0), Send(0, ua=CHROME_UA)], 2),
    "impressions follow the same rule": Case(
        [{"auction_id_64": 1}],
        [Send(kind="pixel"), Send(kind="pixel"), Send(kind="pixel", ip=COLLEAGUE), Send(0, U1, kind="impression")],
        0,
        impressions_duplicate=1,
    ),
}


@pytest.fixture
async def edge(
    aiohttp_client: Callable[..., Awaitable[Client]], tmp_path: Path
) -> AsyncIterator[tuple[Client, BidderStub]]:
    """The edge with its notifier on one embedded log, believing `X-Forwarded-For` to vary addresses."""
    stub = BidderStub()
    await stub.start()
    config = build_config(
        tmp_path,
        edge={"public_url": "http://clickbus.test", "trust_forwarded": True},
        members={"13": {"click_uri": stub.url, "allow_private": True}},
        notifier={"commit_interval_s": 0.05},
    )
    client = await aiohttp_client(runtime.edge_app(config, with_notifier=True))
    yield client, stub
    await stub.stop()


async def _insert(client: Client, auction: dict[str, Any], landing: str) -> dict[str, Any]:
    body = {"markup": "<img src='${IMPRESSION_URL}'>", "landing_url": landing, "auction": {"member_id": 13, **auction}}
    async with admin_client(client.app) as admin:  # insertion is on the internal listener
        response = await admin.post("/v1/insert", json=body)
        assert response.status == 200, await response.text()
        inserted: dict[str, Any] = await response.json()
    return inserted


def _path(url: str) -> str:
    return urlsplit(url).path


async def _send(client: Client, inserted: dict[str, Any], send: Send) -> None:
    headers = {"User-Agent": send.ua, "X-Forwarded-For": send.ip}
    if send.kind == "pixel":
        response = await client.get(_path(inserted["impression_url"]), headers=headers)
        assert response.status == 200
    elif send.body is None:
        response = await client.get(_path(inserted["click_url"]), headers=headers, allow_redirects=False)
        assert response.status == 302
    else:
        response = await client.post(_path(inserted["beacons"][send.kind]), json=send.body, headers=headers)
        assert response.status == 202


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
async def test_dedup_rule(edge: tuple[Client, BidderStub], case: Case) -> None:
    client, stub = edge
    landings = case.landings or ["https://shop.example/"] * len(case.ads)
    inserted = [await _insert(client, ad, landing) for ad, landing in zip(case.ads, landings, strict=True)]
    for send in case.sends:
        await _send(client, inserted[send.ad], send)
    clicks = sum(1 for s in case.sends if s.kind == "click")
    log = client.app[LOG]

    async def judged() -> list[dict[str, Any]] | None:
        outcomes = await records(log, Topic.DELIVERIES)
        invalid = [o for o in outcomes if o["outcome"] == "invalid"]
        settled = len(stub.received) + len(invalid) >= clicks + case.impressions_duplicate
        return outcomes if settled and len(stub.received) >= case.delivered else None

    outcomes = await eventually_async(judged)
    duplicates = [o for o in outcomes if o["reason"] == Reason.DUPLICATE]
    assert len(stub.received) == case.delivered
    assert len({r.webhook_id for r in stub.received}) == case.delivered
    assert len(duplicates) == clicks - case.delivered + case.impressions_duplicate
    assert all(o["reason"] == Reason.DUPLICATE for o in outcomes if o["outcome"] == "invalid")
