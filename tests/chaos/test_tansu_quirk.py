"""Tansu 0.6, the test broker, acknowledges records that no reader ever gets back: this test pins the quirk.

A producer that knew a topic on a broker replaced by a fresh one (Tansu is
memory-only) sends to it before anyone creates it there. Tansu acknowledges
and stores those records without creating the topic: it is missing from the
list of topics, so `ensure_topics` creates it, and the new topic's offsets
start again from 0. Records acknowledged after that take offsets that the
first ones hold, and a reader gets the first ones there: the later records
are acknowledged and lost. In the broker chaos scenario an in-flight window
of the spool shipper, retried by aiokafka onto the new broker before the
topics were created, was lost that way (about one run in a hundred). When
this test fails, Tansu has been fixed. The second test shows the way round it
that the scenario takes: a gate that keeps clients from the new broker until
its topics exist, as a real broker comes back with them.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # type: ignore[import-untyped]
from aiokafka.errors import KafkaError  # type: ignore[import-untyped]

from clickbus.config import KafkaConfig
from clickbus.log.kafka_client import ensure_topics
from tests.support import configs
from tests.support.kafka_broker import TansuBroker, own_broker
from tests.support.kafka_gate import KafkaGate
from tests.support.ports import free_port

__all__ = ["own_broker"]

TOPIC = "quirk"
BEFORE, AFTER = 600, 30  # records sent before the topic is created on the new broker, and after
SETUP_CLIENT = "quirk-setup"


async def send(producer: Any, n: int) -> tuple[int, int]:
    """Send record `n` to partition n % 3 until Tansu acknowledges it: its (partition, offset)."""
    while True:
        try:
            metadata = await producer.send_and_wait(TOPIC, b"%d" % n, partition=n % 3)
        except KafkaError:  # Tansu refuses sends for a while after the topic is created (each takes an offset)
            await asyncio.sleep(0.1)
            continue
        return metadata.partition, metadata.offset


async def send_all(producer: Any, numbers: range) -> dict[int, tuple[int, int]]:
    places = await asyncio.gather(*(send(producer, n) for n in numbers))
    return dict(zip(numbers, places, strict=True))


async def read_all(bootstrap: str) -> dict[int, tuple[int, int]]:
    """Every record of the topic by number, from the beginning: its (partition, offset)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(TOPIC, p) for p in range(3)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        read: dict[int, tuple[int, int]] = {}
        for _ in range(20):
            for messages in (await consumer.getmany(timeout_ms=100)).values():
                read |= {int(m.value): (m.partition, m.offset) for m in messages}
        return read
    finally:
        await consumer.stop()


async def test_tansu_loses_records_acknowledged_after_a_topic_it_stored_without_creating_is_created(
    own_broker: TansuBroker, tmp_path: Any
) -> None:
    config: KafkaConfig = configs.kafka_config(tmp_path, own_broker.bootstrap).log.kafka
    await ensure_topics(config, [TOPIC], 5.0)
    producer = AIOKafkaProducer(bootstrap_servers=own_broker.bootstrap, acks="all", enable_idempotence=False)
    await producer.start()
    try:
        await send(producer, -1)  # the producer now knows the topic and its 3 partitions
        own_broker.stop()
        own_broker.start()  # a new, empty broker on the same port
        acked = await send_all(producer, range(BEFORE))  # no topic: Tansu stores them all the same
        await ensure_topics(config, [TOPIC], 5.0)  # it is not listed, so it is created
        acked |= await send_all(producer, range(BEFORE, BEFORE + AFTER))
    finally:
        await producer.stop()
    read = await read_all(own_broker.bootstrap)
    assert set(range(BEFORE)) <= set(read)
    lost = {n: acked[n] for n in range(BEFORE, BEFORE + AFTER) if n not in read}
    print(f"acknowledged after the creation and never read: {len(lost)} of {AFTER}", sorted(lost.values()))
    assert lost, "Tansu returned every acknowledged record: the quirk is gone"
    assert all(offset < BEFORE // 3 for _, offset in lost.values()), "lost ones reuse offsets the first ones hold"


async def test_behind_a_gate_shut_until_the_topic_is_created_no_acknowledged_record_is_lost(tmp_path: Any) -> None:
    port = free_port()
    gate = KafkaGate(port, [SETUP_CLIENT]).start()
    broker = TansuBroker(port, advertised_port=gate.port).start()
    try:
        config: KafkaConfig = configs.kafka_config(tmp_path, broker.bootstrap).log.kafka
        await ensure_topics(config, [TOPIC], 5.0)
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", enable_idempotence=False)
        await producer.start()
        try:
            await send(producer, -1)
            broker.stop()
            gate.shut()
            broker.start()  # a new, empty broker that only the setup client reaches
            sending = asyncio.ensure_future(send_all(producer, range(BEFORE)))  # retried until the gate opens
            await ensure_topics(dataclasses.replace(config, client_id=SETUP_CLIENT), [TOPIC], 5.0)
            gate.open()
            acked = await sending
            acked |= await send_all(producer, range(BEFORE, BEFORE + AFTER))
        finally:
            await producer.stop()
        read = await read_all(broker.bootstrap)
    finally:
        broker.stop()
        gate.close()
    assert set(acked) <= set(read), f"acknowledged and never read: {sorted(set(acked) - set(read))[:20]}"
