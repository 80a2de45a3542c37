"""Sending records to Kafka in per-partition batches, with aiokafka's batch API.

Direct appends join their partition's `OpenBatch`, which takes records
until the partition's previous batch is settled (and `linger_ms` has passed),
and then goes to the producer with one `send_batch()`. That is what
`producer.send()` does in aiokafka's accumulator, where a partition's next
batch fills while one is in flight, without its per-record costs (a coroutine,
a metadata check, a size estimate, a partitioner call and a future each): so
batches grow with the load, and no record waits behind a batch that was formed
before it arrived.

The spool shipper sends its windows with `send_batches`. Records go to the
partition aiokafka's default partitioner would choose (murmur2 of the key, as
the Java client), so a record and its spooled copy land on the same one.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

HeaderTuple = tuple[tuple[str, bytes], ...]
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF

# per record of a batch that Kafka did not acknowledge: its spooled copy's fsync, or why the spool refused it
Settlement = tuple["asyncio.Future[None] | BaseException", ...]


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


@lru_cache(maxsize=512)
def _lanes(count: int) -> tuple[Callable[[bytes], tuple[int, ...]], Callable[..., bytes], int]:
    """For `count` 32-bit words: their reader, their packer into 64-bit lanes, and a mask of each lane's low 32 bits."""
    return (
        struct.Struct(f"<{count}I").unpack_from,
        struct.Struct(f"<{count}Q").pack,
        int.from_bytes(b"\xff\xff\xff\xff\0\0\0\0" * count, "little"),
    )


@lru_cache(maxsize=512)
def _unlanes(count: int) -> Callable[[bytes], tuple[int, ...]]:
    return struct.Struct(f"<{count}Q").unpack


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 of `data` (as `aiokafka.partitioner.murmur2`, about five times as fast).

    Each 4-byte word is mixed on its own (`k *= m; k ^= k >> 24; k *= m`) before it meets the running
    hash, so every word is mixed at once: one big integer holds each word in a 64-bit lane, where a
    32-bit word times a 32-bit constant cannot carry into the next lane, and each step is masked back
    to 32 bits a lane (the shift's spill from the next lane lands above them). Only the running hash
    (`h = h * m ^ k`) is a Python loop, two operations a word instead of nine.
    """
    length = len(data)
    h = 0x9747B28C ^ length
    count = length >> 2
    if count:
        read, pack, low = _lanes(count)
        lanes = int.from_bytes(pack(*read(data)), "little") * _M & low
        lanes = ((lanes ^ (lanes >> 24)) & low) * _M & low
        m = _M
        for k in _unlanes(count)(lanes.to_bytes(count * 8, "little")):
            h = h * m ^ k  # masked once at the end: the low 32 bits of h * m ^ k depend only on those of h
        h &= _MASK
    tail = length & 3
    if tail:
        end = length - tail
        if tail == 3:
            h ^= data[end + 2] << 16
        if tail >= 2:
            h ^= data[end + 1] << 8
        h = ((h ^ data[end]) * _M) & _MASK
    h = ((h ^ (h >> 13)) * _M) & _MASK
    return h ^ (h >> 15)


def partition_for(key: bytes, partitions: Sequence[int]) -> int:
    """The partition aiokafka's default partitioner picks for `key` among `partitions` (sorted)."""
    return partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]


class Outcome(asyncio.Future["Settlement | None"]):
    """A batch's outcome, awaited by all its appends: one of them cancelled must not cancel it for the
    others (that append's task is cancelled once the outcome is known, within the budget)."""

    def cancel(self, msg: Any = None) -> bool:
        return False


class OpenBatch:
    """One partition's batch while it takes records, and the outcome its records wait for.

    A batch takes records until it is queued in the producer, which happens
    once the partition's previous batch is settled and `linger_ms` has passed
    since the batch opened: the records that arrive while one batch is in
    flight go out together in the next. It is closed before it is queued, so
    the producer counts its records (an idempotent producer numbers them) when
    they are all in.

    `settled` is answered once for the whole batch: None when Kafka
    acknowledged it, else one entry per record (its spooled copy's fsync, or
    why the spool refused it), in the order `add` numbered them.
    """

    __slots__ = (
        "builder",
        "full",
        "name",
        "opened",
        "partition",
        "previous",
        "producer",
        "records",
        "sending",
        "settled",
        "shut",
        "topics",
    )

    def __init__(self, producer: Any, name: str, partition: int, previous: OpenBatch | None) -> None:
        loop = asyncio.get_running_loop()
        self.producer = producer
        self.builder = producer.create_batch()
        self.name = name
        self.partition = partition
        self.previous = previous  # the partition's batch before this one, until this one may go
        self.opened = loop.time()
        self.full = False  # the builder refused a record for want of room
        self.shut = False  # closed here: queued, settled, or dropped at a fall-back
        self.records: list[Outgoing] = []
        self.topics: list[str] = []  # each record's log topic, for its spooled copy
        self.settled = Outcome(loop=loop)
        self.sending: asyncio.Task[None] | None = None  # the task that queues it and hands its delivery on

    def add(self, topic: str, record: Outgoing) -> int | None:
        """The record's number in the batch; None once the batch is full or closed (an empty one takes any)."""
        if _append(self.builder, record) is None:
            self.full = not self.shut
            return None
        self.records.append(record)
        self.topics.append(topic)
        return len(self.records) - 1

    def close(self) -> None:
        """Take no more records."""
        self.shut = True
        self.builder.close()

    async def ready(self, linger_s: float) -> None:
        """Wait until the partition's previous batch is settled, and `linger_s` after opening unless full."""
        previous, self.previous = self.previous, None
        if previous is not None and not previous.settled.done():
            await asyncio.wait((previous.settled,))
        if not self.full:
            left = self.opened + linger_s - asyncio.get_running_loop().time()
            if left > 0:
                await asyncio.sleep(left)

    async def queue(self) -> asyncio.Future[Any]:
        """Close the batch and queue it in the producer: its delivery."""
        self.close()
        producer, name, partition = self.producer, self.name, self.partition
        delivery: asyncio.Future[Any] = await producer.send_batch(self.builder, name, partition=partition)
        return delivery


class OpenBatches:
    """The newest batch of each partition of one producer, and the partitions of each topic it knows."""

    __slots__ = ("newest", "partitions", "producer")

    def __init__(self, producer: Any) -> None:
        self.producer = producer
        self.newest: dict[tuple[str, int], OpenBatch] = {}
        self.partitions: dict[str, Sequence[int]] = {}

    async def learn(self, name: str) -> None:
        """Fetch the partitions of topic `name` (aiokafka waits for its metadata)."""
        self.partitions[name] = sorted(await self.producer.partitions_for(name))

    def join(self, topic: str, record: Outgoing) -> tuple[OpenBatch, int, bool] | None:
        """Add `record` to its partition's open batch: the batch, the record's number, and whether the
        batch is new (the caller then sends it). None while the topic's partitions are unknown."""
        partitions = self.partitions.get(record.name)
        if partitions is None:
            return None
        tp = (record.name, partition_for(record.key, partitions))
        batch = self.newest.get(tp)
        if batch is not None:
            index = batch.add(topic, record)
            if index is not None:
                return batch, index, False
        batch = self.newest[tp] = OpenBatch(self.producer, tp[0], tp[1], batch)
        index = batch.add(topic, record)
        assert index is not None, "an empty batch takes any one record"
        return batch, index, True

    def close(self) -> None:
        """Let no batch take another record."""
        for batch in self.newest.values():
            batch.close()
        self.newest.clear()


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
        if _append(builder, record) is None:  # full; an empty builder takes any one record
            await _queue(producer, builder, name, partition, sent, into)
            sent, builder = Sent(), producer.create_batch()
            _append(builder, record)
        sent.records.append(record)
    await _queue(producer, builder, name, partition, sent, into)


def _append(builder: Any, record: Outgoing) -> Any:
    """aiokafka's metadata of the record added to `builder`; None if the builder is full or closed."""
    headers = list(record.headers)
    return builder.append(timestamp=record.timestamp_ms, key=record.key, value=record.value, headers=headers)


async def _queue(producer: Any, builder: Any, name: str, partition: int, sent: Sent, into: list[Sent]) -> None:
    builder.close()  # the shipper's batch is complete: no linger in the producer
    sent.delivery = await producer.send_batch(builder, name, partition=partition)
    into.append(sent)


def succeeded(future: asyncio.Future[Any] | None) -> bool:
    """Whether a delivery is known to have been acknowledged."""
    return future is not None and future.done() and not future.cancelled() and future.exception() is None
