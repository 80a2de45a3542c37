"""The Kafka adapter on a real broker: clicks through the edge, `clickbus tail` (the port itself: test_contract)."""

from __future__ import annotations

import asyncio
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
from clickbus.log.port import Topic
from clickbus.records import SCHEMA_VERSION, ClickRecord
from clickbus.tokens import AdContext, Keyring, new_key
from tests.log.conftest import KafkaConfigFactory
from tests.log.kafka_helpers import consume_all
from tests.support.edgeapp import admin_client
from tests.support.kafka_broker import TansuBroker

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
    async with admin_client(client.app) as admin:  # the reason is for operators: the internal listener
        ready = await admin.get("/readyz")
        assert ready.status == 503
        assert "spooling to disk (1 records pending)" in (await ready.json())["reason"]


async def test_a_broker_that_refuses_the_idempotent_producer_is_named_once_with_the_setting_to_change(
    aiohttp_client: AiohttpClient,
    kafka_broker: TansuBroker,
    kafka_config: KafkaConfigFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = kafka_config(kafka_broker, idempotence=True)  # Tansu 0.6 refuses InitProducerId v0
    keyring = Keyring({"k1": new_key()}, "k1")
    url = Inserter(keyring, config.edge.public_url, ttl_s=3600).click_url(AD)
    client = await aiohttp_client(create_app(config, keyring=keyring))
    assert (await client.get(urlsplit(url).path, allow_redirects=False)).status == 302
    await asyncio.sleep(1.0)  # the shipper tries again meanwhile, and is refused again

    async with admin_client(client.app) as admin:
        ready = await admin.get("/readyz")
        reason = (await ready.json())["reason"]
    assert ready.status == 503
    assert "refused the idempotent producer" in reason and "log.kafka.idempotence = false" in reason
    refusals = [r for r in caplog.records if "refused the idempotent producer" in r.getMessage()]
    assert len(refusals) == 1 and refusals[0].levelname == "ERROR"
