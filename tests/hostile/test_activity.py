"""Activity-based invalid traffic through a real `clickbus run` with its notifier and a bidder stub.

One client address clicking one token with many user agents, or many times, is judged by the
notifier: from one address on one ad within the click window, the fourth and later distinct user
agents and the eleventh and later clicks are invalid (`activity`) and never reach the bidder.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson

from clickbus.log.port import Topic
from clickbus.records import Reason
from tests.hostile.harness import SERVICE_TABLES, Answer, Tally, fetch, insert_url, session
from tests.support.bidder import BidderStub
from tests.support.records import recorded
from tests.support.service import Service
from tests.support.waiting import eventually_async

FLOODS = {"one token, 20 user agents": (20, 20), "one token, 200 rotating user agents": (200, 200)}
FLOODS |= {"one token, 40 clicks, 2 user agents, 40 users": (40, 2)}


def agent(n: int) -> str:
    return f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) Gecko/20100101 Firefox/{n}.0"


async def test_an_address_flooding_one_ad_gets_three_agents_and_ten_clicks_delivered(tmp_path: Path) -> None:
    stub = BidderStub()
    await stub.start()
    members = f'[members.13]\nclick_uri = "{stub.url}"\nallow_private = true\n'
    service = Service(tmp_path, notifier=True, extra=SERVICE_TABLES + members)
    try:
        await asyncio.to_thread(service.start)
        async with session() as client:
            for auction, (category, (clicks, agents)) in enumerate(FLOODS.items(), start=1):
                await _flood(service, client, stub, category, clicks, agents, auction)
    finally:
        await asyncio.to_thread(service.stop)
        await stub.stop()


async def _flood(
    service: Service, client: Any, stub: BidderStub, category: str, clicks: int, agents: int, auction: int
) -> None:
    """`clicks` clicks with `agents` user agents from one address on a fresh ad (its own auction: tokens minted
    within one second for the same context are the same token, so the same ad)."""
    tally = Tally(f"activity: {category}")
    delivered_before, invalid_before = len(stub.received), len(await _invalid(service))
    body = {
        "markup": "",
        "landing_url": "https://shop.example/",
        "auction": {"member_id": 13, "auction_id_64": auction},
    }
    inserted = orjson.loads((await fetch(client, "POST", insert_url(service), json=body)).body)
    for n in range(clicks):
        headers = {"User-Agent": agent(n % agents)}
        if agents == clicks:  # every click a new agent: the redirect
            tally.count(await fetch(client, "GET", inserted["click_url"], headers=headers), f"click {n}", (302,))
        else:  # few agents: beacons with a user each, so that no click is another's duplicate
            beacon = inserted["beacons"]["click"]
            answer = await fetch(client, "POST", beacon, json={"user_id": f"u{n}"}, headers=headers)
            tally.count(answer, f"beacon {n}", (202,))

    async def judged() -> list[dict[str, Any]] | None:
        invalid = (await _invalid(service))[invalid_before:]
        return invalid if len(stub.received) - delivered_before + len(invalid) >= clicks else None

    invalid = await eventually_async(judged, timeout_s=30.0)
    delivered = len(stub.received) - delivered_before
    activity = sum(1 for o in invalid if o["reason"] == Reason.ACTIVITY)
    tally.notes = {"delivered": delivered, "activity": activity}
    expected = min(3, agents) if agents == clicks else 10
    over = Answer(None) if (delivered, activity) != (expected, clicks - expected) else None
    if over is not None:
        tally.count(over, f"delivered {delivered}, activity {activity}: expected {expected}", expected=(0,))
    tally.report()


async def _invalid(service: Service) -> list[dict[str, Any]]:
    return [o for o in await recorded(service.config, Topic.DELIVERIES) if o["outcome"] == "invalid"]
