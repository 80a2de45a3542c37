"""Sending records to Kafka in per-partition batches, with aiokafka's batch API.

`producer.send()` per record costs a coroutine, a metadata check, a
partitioner call and an accumulator lookup each. The Kafka adapter instead
gathers the appends of one loop tick and hands them here: records are grouped
by the partition aiokafka's default partitioner would choose (murmur2 of the
key, as the Java client), appended to `create_batch()` builders, and each
builder is queued with one `send_batch()`. Every record's outcome is its
batch's delivery future.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka.partitioner import DefaultPartitioner  # type: ignore[import-untyped]

HeaderTuple = tuple[tuple[str, bytes], ...]
_partitioner = DefaultPartitioner()


@dataclass(slots=True)
class Outgoing:
    """One record on its way to Kafka; `name` is the Kafka topic name."""

    name: str
    key: bytes
    value: bytes
    headers: HeaderTuple
    timestamp_ms: int


@dataclass(slots=True)
class Sent:
    """A batch queued in the producer: its records and its delivery."""

    records: list[Outgoing] = field(default_factory=list)
    delivery: asyncio.Future[Any] | None = None


def partition_for(key: bytes, partitions: Sequence[int]) -> int:
    """The partition aiokafka's default partitioner picks for `key` among `partitions` (sorted)."""
    return int(_partitioner(key, partitions, partitions))


async def send_batches(producer: Any, records: Sequence[Outgoing], into: list[Sent]) -> None:
    """Queue `records` as one batch per partition (more when one fills up), appending each to `into`.

    `into` fills as batches are queued, so that a caller that gives up midway
    still knows which records are on their way.
    """
    by_partition: dict[tuple[str, int], list[Outgoing]] = {}
    partitions: dict[str, list[int]] = {}
    for record in records:
        found = partitions.get(record.name)
        if found is None:
            found = partitions[record.name] = sorted(await producer.partitions_for(record.name))
        by_partition.setdefault((record.name, partition_for(record.key, found)), []).append(record)
    for (name, partition), group in by_partition.items():
        await _send_partition(producer, name, partition, group, into)


async def _send_partition(producer: Any, name: str, partition: int, records: list[Outgoing], into: list[Sent]) -> None:
    sent, builder = Sent(), producer.create_batch()
    for record in records:
        if not _add(builder, record):  # full; an empty builder takes any one record
            await _queue(producer, builder, name, partition, sent, into)
            sent, builder = Sent(), producer.create_batch()
            _add(builder, record)
        sent.records.append(record)
    await _queue(producer, builder, name, partition, sent, into)


def _add(builder: Any, record: Outgoing) -> bool:
    added = builder.append(
        timestamp=record.timestamp_ms, key=record.key, value=record.value, headers=list(record.headers)
    )
    return added is not None


async def _queue(producer: Any, builder: Any, name: str, partition: int, sent: Sent, into: list[Sent]) -> None:
    sent.delivery = await producer.send_batch(builder, name, partition=partition)
    into.append(sent)


def succeeded(future: asyncio.Future[Any] | None) -> bool:
    """Whether a delivery is known to have been acknowledged."""
    return future is not None and future.done() and not future.cancelled() and future.exception() is None
