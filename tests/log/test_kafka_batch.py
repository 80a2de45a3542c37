"""Batched Kafka appends on a real broker: partitioning as aiokafka's, one linger at most, a shared outcome."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner, murmur2  # type: ignore[import-untyped]
from hypothesis import given
from hypothesis import strategies as st

from clickbus.log import open_log
from clickbus.log.kafka import KafkaLog
from clickbus.log.kafka_batch import murmur2 as fast_murmur2
from clickbus.log.kafka_batch import partition_for
from clickbus.log.port import Topic
from tests.log.conftest import KafkaConfigFactory
from tests.log.kafka_helpers import consume_all
from tests.support.kafka_broker import TansuBroker

LINGER_S = 0.4


@given(st.binary(max_size=300))
def test_murmur2_is_kafkas(data: bytes) -> None:
    assert fast_murmur2(data) == murmur2(data)


@pytest.mark.parametrize("partitions", [[0], [0, 1, 2], list(range(12)), [0, 2, 5]])
@given(key=st.binary(min_size=1, max_size=120))
def test_a_key_goes_to_the_partition_aiokafka_would_pick(partitions: list[int], key: bytes) -> None:
    assert partition_for(key, partitions) == DefaultPartitioner()(key, partitions, partitions)


async def started(log: KafkaLog) -> KafkaLog:
    await log.start()
    await log.append(Topic.CLICKS, b"warm-up", b"{}")  # the topic's metadata is known from here on
    return log


async def timed_append(log: KafkaLog, after_s: float, key: bytes) -> float:
    await asyncio.sleep(after_s)
    loop = asyncio.get_running_loop()
    started_at = loop.time()
    await log.append(Topic.CLICKS, key, orjson.dumps({"key": key.decode()}))
    return loop.time() - started_at


async def test_an_append_made_while_a_batch_lingers_joins_it_and_waits_one_linger_at_most(
    kafka_broker: TansuBroker, kafka_config: KafkaConfigFactory
) -> None:
    # Before: the group formed while the first one lingered waited for the first to be taken (one linger),
    # then lingered in the producer again: the second append took 1.75 lingers.
    config = kafka_config(kafka_broker, linger_ms=int(LINGER_S * 1000), append_budget_ms=10_000, partitions=1)
    log = open_log(config)
    assert isinstance(log, KafkaLog)
    await started(log)
    try:
        first, second = await asyncio.gather(
            timed_append(log, 0.0, b"first"), timed_append(log, LINGER_S / 4, b"second")
        )
    finally:
        await log.stop(5)
    assert first >= LINGER_S * 0.9, "the first append lingers for company"
    assert second < LINGER_S * 1.25, f"the second append waited {second:.3f}s for a {LINGER_S}s linger"
    keys = [m.key for m in await consume_all(config, Topic.CLICKS)]
    assert keys == [b"warm-up", b"first", b"second"]


async def test_one_append_cancelled_leaves_the_others_of_its_batch_to_be_acknowledged(
    kafka_broker: TansuBroker, kafka_config: KafkaConfigFactory
) -> None:
    config = kafka_config(kafka_broker, linger_ms=200, append_budget_ms=10_000, partitions=1)
    log = open_log(config)
    assert isinstance(log, KafkaLog)
    await started(log)
    try:
        appends = [asyncio.create_task(log.append(Topic.CLICKS, b"same", orjson.dumps({"n": n}))) for n in range(3)]
        await asyncio.sleep(0.05)  # all three wait in one lingering batch
        appends[0].cancel()
        await asyncio.gather(*appends[1:])
        with pytest.raises(asyncio.CancelledError):
            await appends[0]
        assert log.health.ready, log.health.reason
    finally:
        await log.stop(5)
    values = [orjson.loads(m.value) for m in await consume_all(config, Topic.CLICKS)]
    assert values[1:] == [{"n": 0}, {"n": 1}, {"n": 2}], "the cancelled append was in the batch already"
