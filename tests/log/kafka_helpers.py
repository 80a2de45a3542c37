"""Helpers for the Kafka tests: reading a topic with a plain aiokafka consumer."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition  # type: ignore[import-untyped]

from clickbus.config import Config


async def consume_all(config: Config, topic: str, timeout_s: float = 10.0) -> list[Any]:
    """Every record of `topic` up to its end offsets now, read by a plain aiokafka consumer."""
    name = f"{config.log.topic_prefix}.{topic}"
    consumer = AIOKafkaConsumer(bootstrap_servers=[str(s) for s in config.log.kafka.bootstrap_servers])
    await consumer.start()
    found: list[Any] = []
    try:
        async with asyncio.timeout(timeout_s):
            await consumer.topics()
            partitions = [TopicPartition(name, p) for p in sorted(consumer.partitions_for_topic(name) or ())]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends = await consumer.end_offsets(partitions)
            while any([await consumer.position(tp) < end for tp, end in ends.items()]):
                for messages in (await consumer.getmany(timeout_ms=200)).values():
                    found += messages
    finally:
        await consumer.stop()
    return found
