"""The activity rule, through the real edge, its in-process notifier and a bidder stub.

From one client address on one ad within the click window, the fourth and later distinct user
agents and the eleventh and later clicks of any kind are invalid, reason `activity` (README,
"Invalid traffic by activity"). The address is the keyed hash of the full address, as for dedup,
so two people behind one /24 are counted apart. Windows are rebuilt from the log when the notifier
starts again, as dedup windows are.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from clickbus.config import Config
from clickbus.edge.appkeys import LOG
from clickbus.log.port import Topic
from clickbus.records import Reason
from clickbus.runtime import edge_app
from tests.support.bidder import BidderStub
from tests.support.configs import build_config
from tests.support.edgeapp import EdgeClient as Client
from tests.support.edgeapp import admin_client
from tests.support.records import records
from tests.support.waiting import eventually_async

OFFICE = "198.51.100.7"  # one /24 ...
COLLEAGUE = "198.51.100.8"  # ... two people
MakeClient = Callable[..., Awaitable[Client]]


def agent(n: int) -> str:
    return f"Mozilla/5.0 (X11; Linux x86_64; rv:{100 + n}.0) Gecko/20100101 Firefox/{100 + n}.0"


@dataclass(frozen=True, slots=True)
class Send:
    """One click on the one insertion: by redirect (`user` None) or beacon with that `user_id`, from `ip` with `ua`."""

    ua: str
    ip: str = OFFICE
    user: str | None = None


@dataclass(frozen=True, slots=True)
class Case:
    sends: list[Send]
    delivered: int
    notifier: dict[str, Any] | None = None


CASES = {
    "one address, one token, 20 user agents": Case([Send(agent(n)) for n in range(20)], 3),
    "one address, one ad, 12 beacon users with one user agent": Case(
        [Send(agent(0), user=f"u{n}") for n in range(12)], 10
    ),
    "two people behind one /24, 4 user agents each": Case(
        [Send(agent(n), ip=ip) for ip in (OFFICE, COLLEAGUE) for n in range(4)], 6
    ),
    "a fourth agent's clicks stay invalid, the first three's stay valid": Case(
        [Send(agent(n % 4), user=f"u{n}") for n in range(8)], 6
    ),
    "thresholds are configurable": Case(
        [Send(agent(n)) for n in range(8)], 5, {"activity_max_agents": 5, "activity_max_clicks": 6}
    ),
}


def config_for(tmp_path: Path, stub: BidderStub, notifier: dict[str, Any] | None = None) -> Config:
    """The edge with its notifier on one embedded log, believing `X-Forwarded-For` to vary addresses."""
    return build_config(
        tmp_path,
        edge={"public_url": "http://clickbus.test", "trust_forwarded": True},
        members={"13": {"click_uri": stub.url, "allow_private": True}},
        notifier={"commit_interval_s": 0.05, **(notifier or {})},
    )


async def insert(client: Client) -> dict[str, Any]:
    """One insertion, without a user id, so that the address is who the user is."""
    body = {"markup": "", "landing_url": "https://shop.example/", "auction": {"member_id": 13, "auction_id_64": 7}}
    async with admin_client(client.app) as admin:
        response = await admin.post("/v1/insert", json=body)
        assert response.status == 200, await response.text()
        inserted: dict[str, Any] = await response.json()
    return inserted


async def send(client: Client, inserted: dict[str, Any], click: Send) -> None:
    headers = {"User-Agent": click.ua, "X-Forwarded-For": click.ip}
    if click.user is None:
        response = await client.get(urlsplit(inserted["click_url"]).path, headers=headers, allow_redirects=False)
        assert response.status == 302
    else:
        path = urlsplit(inserted["beacons"]["click"]).path
        response = await client.post(path, json={"user_id": click.user}, headers=headers)
        assert response.status == 202


async def judged(client: Client, stub: BidderStub, clicks: int) -> list[dict[str, Any]]:
    """The verdicts, once every one of `clicks` clicks is delivered or judged invalid."""

    async def settled() -> list[dict[str, Any]] | None:
        outcomes = await records(client.app[LOG], Topic.DELIVERIES)
        invalid = [o for o in outcomes if o["outcome"] == "invalid"]
        return (
            [o for o in outcomes if o["outcome"] in ("invalid", "delivered")]
            if len(stub.received) + len(invalid) >= clicks
            else None
        )

    return await eventually_async(settled)


@pytest.fixture
async def stub() -> Any:
    bidder = BidderStub()
    await bidder.start()
    yield bidder
    await bidder.stop()


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
async def test_activity_rule(aiohttp_client: MakeClient, tmp_path: Path, stub: BidderStub, case: Case) -> None:
    client = await aiohttp_client(edge_app(config_for(tmp_path, stub, case.notifier), with_notifier=True))
    inserted = await insert(client)
    for click in case.sends:
        await send(client, inserted, click)
    outcomes = await judged(client, stub, len(case.sends))
    assert len(stub.received) == case.delivered
    invalid = [o["reason"] for o in outcomes if o["outcome"] == "invalid"]
    assert invalid == [Reason.ACTIVITY] * (len(case.sends) - case.delivered)


async def test_activity_survives_a_restart_of_the_notifier(
    aiohttp_client: MakeClient, tmp_path: Path, stub: BidderStub
) -> None:
    """Before the rebuild, a notifier started again judged the address's later clicks afresh and delivered them."""
    config = config_for(tmp_path, stub)
    first = await aiohttp_client(edge_app(config, with_notifier=True))
    inserted = await insert(first)
    for n in range(5):  # agents 0-2 delivered, 3 and 4 activity
        await send(first, inserted, Send(agent(n)))
    await judged(first, stub, 5)
    assert len(stub.received) == 3
    await first.close()  # the notifier commits and stops; the next one resumes after these clicks
    second = await aiohttp_client(edge_app(config, with_notifier=True))
    for n in (5, 6, 0):  # two more agents: activity; agent 0 again: a duplicate of its first click
        await send(second, inserted, Send(agent(n)))
    outcomes = await judged(second, stub, 8)
    assert len(stub.received) == 3
    reasons = [o["reason"] for o in outcomes if o["outcome"] == "invalid"]
    assert reasons == [Reason.ACTIVITY] * 4 + [Reason.DUPLICATE]
