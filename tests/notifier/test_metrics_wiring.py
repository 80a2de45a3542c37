"""The metrics move where things happen: publisher APIs, the notifier's deliveries, the Kafka spool.

Each test drives the real edge (with the notifier in the same process, delivering to a real
bidder stub) and reads the numbers back from its `/metrics` text, as Prometheus would.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path
from typing import Any

from pytest_aiohttp import AiohttpClient

from clickbus import runtime
from clickbus.config import Config, HostPort, KafkaConfig
from clickbus.creative import Insertion
from clickbus.edge.appkeys import INSERTER
from clickbus.log.kafka import KafkaLog
from clickbus.log.metered import MeteredLog
from clickbus.metrics import BreakerState, create_metrics, render
from clickbus.tokens import AdContext
from tests.notifier import factory as f
from tests.notifier.conftest import StartStub
from tests.support.configs import build_config
from tests.support.edgeapp import EdgeClient, admin_client
from tests.support.ports import free_port
from tests.support.waiting import eventually, eventually_async
from tests.test_metrics import sample

MEMBER = 13
API_KEY = "test-key-for-metrics"
BODY = {"user_id": "u-1", "session_id": "s-1"}
BEARER = {"Authorization": f"Bearer {API_KEY}"}


def _config(tmp_path: Path, click_uri: str, **notifier: Any) -> Config:
    return build_config(
        tmp_path / "var",
        members={str(MEMBER): {"click_uri": click_uri, "allow_private": True}},
        notifier={"retry_base_s": 0.05, "retry_max_delay_s": 0.1, "commit_interval_s": 0.05, **notifier},
        campaigns={"1": {"member_id": MEMBER, "placements": ["header_banner"]}},
        api_keys={"pub": {"sha256": hashlib.sha256(API_KEY.encode()).hexdigest(), "rate_per_s": 100}},
    )


async def _edge(aiohttp_client: AiohttpClient, config: Config) -> EdgeClient:
    app = runtime.edge_app(config, metrics=create_metrics(), with_notifier=True)
    # a browser's user agent: the notifier drops crawlers' clicks (aiohttp's own agent is one)
    return await aiohttp_client(app, headers={"User-Agent": f.BROWSER_UA})


def _insertion(client: EdgeClient) -> Insertion:
    ad = AdContext(member_id=MEMBER, auction_id_64=int(time.time_ns() % 10**12), landing_url="https://adv.example/")
    return client.app[INSERTER].insert("<a href='${CLICK_URL}'>ad</a>", ad)


async def _scrape(client: EdgeClient) -> str:
    async with admin_client(client.app) as admin:  # /metrics is on the internal listener
        response = await admin.get("/metrics")
        assert response.status == 200
        return await response.text()


async def _metric(client: EdgeClient, name: str, **labels: str) -> float:
    return sample(await _scrape(client), name, **labels) or 0.0


def _path(url: str) -> str:
    return "/" + url.split("/", 3)[3]


async def test_publisher_apis_count_clicks_and_impressions_by_source(
    aiohttp_client: AiohttpClient, stubs: StartStub, tmp_path: Path
) -> None:
    stub = await stubs()
    client = await _edge(aiohttp_client, _config(tmp_path, stub.url))
    insertion = _insertion(client)
    cases: list[tuple[str, str, dict[str, Any], int, str, str]] = [
        ("post", _path(insertion.beacon_click_url), {"json": BODY}, 202, "clickbus_clicks_total", "beacon"),
        ("post", _path(insertion.beacon_impression_url), {"json": BODY}, 202, "clickbus_impressions_total", "beacon"),
        ("get", _path(insertion.impression_url), {}, 200, "clickbus_impressions_total", "pixel"),
        (
            "post",
            "/api/v1/campaigns/click",
            {"json": {"campaignId": 1, "placement": "header_banner"}, "headers": BEARER},
            200,
            "clickbus_clicks_total",
            "server",
        ),
    ]
    for method, path, kwargs, status, name, source in cases:
        before = await _metric(client, name, source=source, reason="valid")
        response = await getattr(client, method)(path, **kwargs)
        assert response.status == status, (path, await response.text())
        assert await _metric(client, name, source=source, reason="valid") == before + 1, (path, name)


async def test_refused_beacon_counts_nothing(aiohttp_client: AiohttpClient, stubs: StartStub, tmp_path: Path) -> None:
    stub = await stubs()
    client = await _edge(aiohttp_client, _config(tmp_path, stub.url))
    response = await client.post("/v1/beacon/click/not-a-token", json=BODY)
    assert response.status == 400
    assert await _metric(client, "clickbus_clicks_total", source="beacon", reason="valid") == 0


async def test_beacon_click_delivered_to_the_bidder_moves_delivery_metrics(
    aiohttp_client: AiohttpClient, stubs: StartStub, tmp_path: Path
) -> None:
    stub = await stubs()
    client = await _edge(aiohttp_client, _config(tmp_path, stub.url))
    response = await client.post(_path(_insertion(client).beacon_click_url), json=BODY)
    assert response.status == 202
    await eventually(lambda: stub.received)
    member = str(MEMBER)
    await eventually_async(lambda: _metric(client, "clickbus_deliveries_total", member=member, status="delivered"))
    assert await _metric(client, "clickbus_clicks_total", source="beacon", reason="valid") == 1
    assert await _metric(client, "clickbus_breaker_state", member=member) == BreakerState.CLOSED
    assert await _metric(client, "clickbus_dead_letters_total", member=member) == 0
    # the group committed past the click: nothing left behind on the clicks topic
    await eventually_async(
        lambda: _lag_is(client, {"group": "clickbus-notifier", "topic": "clicks", "partition": "0"}, 0.0)
    )


async def _lag_is(client: EdgeClient, labels: dict[str, str], value: float) -> bool:
    return sample(await _scrape(client), "clickbus_consumer_lag_records", **labels) == value


async def test_rejected_click_is_dead_lettered_and_counted(
    aiohttp_client: AiohttpClient, stubs: StartStub, tmp_path: Path
) -> None:
    stub = await stubs(default="400")
    client = await _edge(aiohttp_client, _config(tmp_path, stub.url))
    response = await client.post(_path(_insertion(client).beacon_click_url), json=BODY)
    assert response.status == 202
    member = str(MEMBER)
    await eventually_async(lambda: _metric(client, "clickbus_dead_letters_total", member=member))
    assert await _metric(client, "clickbus_dead_letters_total", member=member) == 1
    assert await _metric(client, "clickbus_deliveries_total", member=member, status="dead") == 1
    assert await _metric(client, "clickbus_deliveries_total", member=member, status="delivered") == 0


async def test_failing_bidder_opens_its_breaker_and_parks_retries(
    aiohttp_client: AiohttpClient, stubs: StartStub, tmp_path: Path
) -> None:
    stub = await stubs(default="500")
    config = _config(tmp_path, stub.url, breaker_failures=1, breaker_cooldown_s=30, retry_horizon_s=60)
    client = await _edge(aiohttp_client, config)
    response = await client.post(_path(_insertion(client).beacon_click_url), json=BODY)
    assert response.status == 202
    member = str(MEMBER)
    await eventually_async(lambda: _metric(client, "clickbus_deliveries_total", member=member, status="retry"))
    assert await _metric(client, "clickbus_breaker_state", member=member) == BreakerState.OPEN
    # read back when due, the click is parked again for its open breaker: one click in the retry queue
    await eventually_async(lambda: _metric(client, "clickbus_deliveries_total", member=member, status="parked"))
    await eventually_async(lambda: _retry_queue_is(client, 1))
    assert len(stub.received) == 1


async def _retry_queue_is(client: EdgeClient, records: float) -> bool:
    return await _metric(client, "clickbus_retry_queue_records") == records


async def test_kafka_spool_depth_and_age_are_reported(tmp_path: Path) -> None:
    closed = HostPort("127.0.0.1", free_port())  # nothing listens there
    kafka = KafkaConfig(bootstrap_servers=(closed,), connect_timeout_ms=200)
    metrics = create_metrics()
    log = MeteredLog(KafkaLog(kafka, spool_dir=tmp_path / "spool"), metrics)
    await log.start()
    try:
        for i in range(3):
            await log.append("clicks", f"k{i}".encode(), b"{}")
        await asyncio.sleep(0.05)
        log.report()
        text = render(metrics)[0].decode()
        assert sample(text, "clickbus_spool_records") == 3
        age = sample(text, "clickbus_spool_oldest_age_seconds")
        assert age is not None and 0.04 <= age < 30
    finally:
        await log.stop(2.0)


async def test_clicks_for_unknown_members_count_under_one_label(
    aiohttp_client: AiohttpClient, stubs: StartStub, tmp_path: Path
) -> None:
    """Anyone holding a token may click for any member id: only configured members get their own series."""
    stub = await stubs()
    client = await _edge(aiohttp_client, _config(tmp_path, stub.url))
    strangers = range(9000, 9030)
    for member_id in strangers:
        ad = AdContext(member_id=member_id, landing_url="https://adv.example/")
        response = await client.get(_path(client.app[INSERTER].click_url(ad)), allow_redirects=False)
        assert response.status == 302

    async def all_counted() -> bool:
        counted = await _metric(client, "clickbus_deliveries_total", member="other", status="no_bidder")
        return counted == len(strangers)

    await eventually_async(all_counted)
    text = await (await client.get("/metrics")).text()
    assert not any(f'member="{m}"' in text for m in strangers)


async def test_the_notifiers_verdicts_are_counted_by_reason(
    aiohttp_client: AiohttpClient, stubs: StartStub, tmp_path: Path
) -> None:
    """The edge records three clicks valid; the notifier judges one a duplicate and one a crawler's."""
    stub = await stubs()
    client = await _edge(aiohttp_client, _config(tmp_path, stub.url))
    click_url = _path(_insertion(client).click_url or "")
    for user_agent in (f.BROWSER_UA, f.BROWSER_UA, "Googlebot/2.1 (+http://www.google.com/bot.html)"):
        response = await client.get(click_url, headers={"User-Agent": user_agent}, allow_redirects=False)
        assert response.status == 302
    verdicts = {reason: 1.0 for reason in ("valid", "duplicate", "bot")}

    async def counted() -> bool:
        scraped = await _scrape(client)
        return all(sample(scraped, "clickbus_verdicts_total", kind="click", reason=r) == n for r, n in verdicts.items())

    await eventually_async(counted)
    assert await _metric(client, "clickbus_clicks_total", source="redirect", reason="valid") == 3
