"""The Kafka adapter against a real broker: clicks through the edge, group consumers, `clickbus tail`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from pytest_aiohttp import AiohttpClient

from clickbus import cli
from clickbus.config import Config
from clickbus.creative import Inserter
from clickbus.edge import create_app
from clickbus.log import open_log
from clickbus.log.kafka import KafkaLog
from clickbus.log.port import Entry, Topic
from clickbus.records import SCHEMA_VERSION, ClickRecord
from clickbus.tokens import AdContext, Keyring, new_key
from tests.log.conftest import KafkaConfigFactory
from tests.log.kafka_helpers import consume_all
from tests.support.kafka_broker import TansuBroker
from tests.support.waiting import eventually

AD = AdContext(
    member_id=958,
    auction_id_64=7_123_456_789_012_345_678,
    user_id_64=2_987_654_321,
    creative_id=4242,
    landing_url="https://shop.example/landing?x=1",
    custom_notify_data="cnd-\u00e9",
    userdata_json='{"segment":"a"}',
    test=True,
    pos=3,
)


async def started(config: Config) -> KafkaLog:
    log = open_log(config)
    assert isinstance(log, KafkaLog)
    await log.start()
    return log


async def test_a_click_through_the_edge_reaches_kafka_with_every_field(
    aiohttp_client: AiohttpClient, kafka_broker: TansuBroker, kafka_config: KafkaConfigFactory
) -> None:
    config = kafka_config(kafka_broker)
    keyring = Keyring({"k1": new_key()}, "k1")
    url = Inserter(keyring, config.edge.public_url, ttl_s=3600).click_url(AD)
    client = await aiohttp_client(create_app(config, keyring=keyring))
    headers = {"User-Agent": "Mozilla/5.0 (test)", "Referer": "https://pub.example/page"}

    response = await client.get(urlsplit(url).path, headers=headers, allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == AD.landing_url
    assert (await client.get("/readyz")).status == 200

    (message,) = await consume_all(config, Topic.CLICKS)
    record = ClickRecord.from_json(message.value)
    assert message.key == record.dedup_key()
    assert dict(message.headers) == {"kind": b"click", "schema": str(SCHEMA_VERSION).encode()}
    assert record.click_request()["click_request"] == {
        "timestamp": record.timestamp,
        "auction_id_64": AD.auction_id_64,
        "member_id": AD.member_id,
        "user_id_64": AD.user_id_64,
        "referer_url": "https://pub.example/page",
        "user_agent": "Mozilla/5.0 (test)",
        "userdata_json": AD.userdata_json,
        "custom_notify_data": AD.custom_notify_data,
        "test": True,
    }
    assert (record.creative_id, record.landing_url, record.pos, record.valid) == (4242, AD.landing_url, 3, True)
    assert (record.source, record.client_ip) == ("redirect", "127.0.0.0")
    assert orjson.loads(message.value)["click_id"] == record.click_id


async def test_a_group_member_sees_its_partitions_and_resumes_after_its_commit(
    kafka_broker: TansuBroker, kafka_config: KafkaConfigFactory
) -> None:
    config = kafka_config(kafka_broker)
    log = await started(config)
    try:
        for i in range(30):
            await log.append(Topic.CLICKS, f"user{i % 5}".encode(), orjson.dumps({"n": i}), [("kind", b"click")])
        assigned: list[tuple[str, int]] = []

        async def on_assign(partitions: Any) -> None:
            assigned.extend(partitions)

        first = log.consumer([Topic.CLICKS], "notifier", on_assign=on_assign)
        await first.start()
        got = await fetch_at_least(first, 30)
        assert sorted(orjson.loads(e.value)["n"] for e in got) == list(range(30))
        assert {e.topic for e in got} == {"clicks"} and sorted(assigned) == [("clicks", p) for p in range(3)]
        done = [e for e in got if orjson.loads(e.value)["n"] < 20]
        await first.commit(next_offsets(done))
        await first.stop(5)

        second = log.consumer([Topic.CLICKS], "notifier")
        await second.start()
        rest = await fetch_at_least(second, 10)
        await second.stop(5)
        assert sorted(orjson.loads(e.value)["n"] for e in rest) == list(range(20, 30))
    finally:
        await log.stop(5)


def next_offsets(entries: list[Entry]) -> dict[tuple[str, int], int]:
    offsets: dict[tuple[str, int], int] = {}
    for e in entries:
        offsets[(e.topic, e.partition)] = max(offsets.get((e.topic, e.partition), 0), e.offset + 1)
    return offsets


async def fetch_at_least(consumer: Any, n: int) -> list[Entry]:
    got: list[Entry] = []
    async with asyncio.timeout(15):
        while len(got) < n:
            got += await consumer.fetch(max_records=100, timeout_s=0.5)
        got += await consumer.fetch(max_records=100, timeout_s=0.3)
    return got


async def entries(stream: AsyncIterator[Entry]) -> list[Entry]:
    return [e async for e in stream]


async def test_read_without_follow_stops_at_the_end_and_with_follow_sees_new_records(
    kafka_broker: TansuBroker, kafka_config: KafkaConfigFactory
) -> None:
    config = kafka_config(kafka_broker)
    log = await started(config)
    try:
        for i in range(7):
            await log.append(Topic.IMPRESSIONS, b"k%d" % i, orjson.dumps({"n": i}))
        old = await entries(log.read(Topic.IMPRESSIONS, from_beginning=True, follow=False))
        assert sorted(orjson.loads(e.value)["n"] for e in old) == list(range(7))
        assert await entries(log.read(Topic.IMPRESSIONS, from_beginning=False, follow=False)) == []

        follower = log.read(Topic.IMPRESSIONS, from_beginning=False, follow=True)
        nxt = asyncio.ensure_future(anext(follower))
        # new records until the follower, once positioned at the end, sees one (however long positioning takes)
        appended = await _append_until_done(log, nxt, timeout_s=10.0)
        entry = nxt.result()
        await follower.aclose()  # type: ignore[attr-defined]
        assert orjson.loads(entry.value)["n"] in appended and entry.topic == "impressions"
    finally:
        await log.stop(5)


async def _append_until_done(log: KafkaLog, reader: asyncio.Future[Entry], timeout_s: float) -> list[int]:
    """Append impressions numbered from 100, one every 0.1 s, until `reader` has a record; the numbers appended."""
    appended: list[int] = []
    async with asyncio.timeout(timeout_s):
        while not reader.done():
            n = 100 + len(appended)
            await log.append(Topic.IMPRESSIONS, b"k%d" % n, orjson.dumps({"n": n}))
            appended.append(n)
            await asyncio.wait({reader}, timeout=0.1)
    return appended


async def test_reading_a_topic_nobody_wrote_yet_ends_at_once_and_empty(
    kafka_broker: TansuBroker, kafka_config: KafkaConfigFactory
) -> None:
    # what a checker sees when it asks for dead letters of a broker that has none (a restarted Tansu is empty)
    log = open_log(kafka_config(kafka_broker))
    assert await asyncio.wait_for(entries(log.read(Topic.DLQ, from_beginning=True, follow=False)), 20) == []


def test_clickbus_tail_prints_kafka_records_of_one_member(
    kafka_broker: TansuBroker, kafka_config: KafkaConfigFactory, tmp_path: Any, capsysbinary: Any
) -> None:
    config = kafka_config(kafka_broker)

    async def fill() -> None:
        log = await started(config)
        for member in (1, 2, 1):
            await log.append(Topic.CLICKS, b"k", orjson.dumps({"member_id": member, "click_id": f"c{member}"}))
        await log.stop(5)

    asyncio.run(fill())
    conf = tmp_path / "clickbus.toml"
    kafka = config.log.kafka
    conf.write_text(
        f'[log]\nbackend = "kafka"\ntopic_prefix = "{config.log.topic_prefix}"\n'
        f'[log.kafka]\nbootstrap_servers = "{kafka.bootstrap_servers[0]}"\nidempotence = false\n'
    )
    assert cli.main(["tail", "--config", str(conf), "--from-beginning", "--member", "1"]) == 0
    lines = capsysbinary.readouterr().out.splitlines()
    assert [orjson.loads(line) for line in lines] == [{"member_id": 1, "click_id": "c1"}] * 2


@pytest.mark.parametrize("broken", ["no-broker"])
async def test_an_edge_without_a_broker_still_redirects_and_is_not_ready(
    aiohttp_client: AiohttpClient, kafka_config: KafkaConfigFactory, broken: str
) -> None:
    config = kafka_config(TansuBroker())  # a free port where nothing listens
    keyring = Keyring({"k1": new_key()}, "k1")
    url = Inserter(keyring, config.edge.public_url, ttl_s=3600).click_url(AD)
    client = await aiohttp_client(create_app(config, keyring=keyring))
    response = await client.get(urlsplit(url).path, allow_redirects=False)
    assert response.status == 302
    ready = await client.get("/readyz")
    assert ready.status == 503
    assert "spooling to disk (1 records pending)" in (await ready.json())["reason"]


async def test_a_topic_outside_the_known_ones_is_created_on_first_use(
    kafka_broker: TansuBroker, kafka_config: KafkaConfigFactory
) -> None:
    config = kafka_config(kafka_broker)
    log = await started(config)
    try:
        for n in range(3):
            await log.append("clicks_retry_1", b"k", orjson.dumps({"n": n}))
        # the first append may have waited for the topic to exist
        await eventually(lambda: log.health.ready, timeout_s=20.0)
        got = await entries(log.read("clicks_retry_1", from_beginning=True, follow=False))
        assert [orjson.loads(e.value)["n"] for e in got] == [0, 1, 2]
        assert {e.topic for e in got} == {"clicks_retry_1"}
    finally:
        await log.stop(5)
