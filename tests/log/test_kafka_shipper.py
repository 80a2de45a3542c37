"""The Kafka spool's shipper is supervised: a bug in it is shown and counted, and shipping goes on after it."""

from __future__ import annotations

import dataclasses

import orjson
import pytest

from clickbus import tasks
from clickbus.log import open_log
from clickbus.log.kafka import KafkaLog
from clickbus.log.port import Topic
from tests.log.conftest import KafkaConfigFactory
from tests.log.kafka_helpers import consume_all
from tests.support.kafka_broker import TansuBroker
from tests.support.waiting import eventually


async def test_a_bug_in_spool_shipping_is_shown_counted_and_shipping_goes_on(
    kafka_broker: TansuBroker, kafka_config: KafkaConfigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = kafka_config(kafka_broker)
    offline = open_log(
        dataclasses.replace(config, log=dataclasses.replace(config.log, kafka=kafka_config(TansuBroker()).log.kafka))
    )
    assert isinstance(offline, KafkaLog)
    await offline.start()  # no broker there: the record goes to the spool
    await offline.append(Topic.CLICKS, b"k", orjson.dumps({"n": 1}))
    await offline.stop(2)

    log = open_log(config)
    assert isinstance(log, KafkaLog)
    ship = log._ship
    calls: list[int] = []

    async def buggy() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug in shipping")
        await ship()

    monkeypatch.setattr(log, "_ship", buggy)
    await log.start()
    try:
        await eventually(lambda: log.health.ready, timeout_s=20)  # shipped, by the restarted shipper
        (failed,) = [state for state in tasks.failures() if state.name == "kafka-shipper"]
        assert (failed.failures, failed.last_error) == (1, "RuntimeError: a bug in shipping")
    finally:
        await log.stop(2)
    assert [orjson.loads(m.value) for m in await consume_all(config, Topic.CLICKS)] == [{"n": 1}]
