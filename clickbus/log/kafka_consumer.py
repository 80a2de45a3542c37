"""Reading Kafka topics: group members for the notifier, plain readers for `clickbus tail`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition  # type: ignore[import-untyped]
from aiokafka.abc import ConsumerRebalanceListener  # type: ignore[import-untyped]
from aiokafka.errors import KafkaError, OffsetOutOfRangeError  # type: ignore[import-untyped]

from clickbus.config import KafkaConfig
from clickbus.errors import LogUnavailable
from clickbus.log.kafka_client import connection_options, start_bounded
from clickbus.log.port import AssignCallback, Entry
from clickbus.log.port import TopicPartition as ShortPartition

logger = logging.getLogger(__name__)
T = TypeVar("T")

POLL_MS = 500
PROBE_S = 2.0  # a follower with nothing to read checks the broker this often
GROUP_REQUEST_TIMEOUT_MS = 40_000  # a JoinGroup waits out the broker's rebalance delay: keep aiokafka's default


@dataclass(frozen=True, slots=True)
class TopicNames:
    """Maps the port's short topic names to Kafka topic names (`clicks` <-> `clickbus.clicks`)."""

    prefix: str

    def full(self, topic: str) -> str:
        return f"{self.prefix}.{topic}"

    def short(self, name: str) -> str:
        return name.removeprefix(f"{self.prefix}.")


def to_entries(names: TopicNames, batches: Mapping[Any, Iterable[Any]]) -> list[Entry]:
    """Port entries from aiokafka's records, partition by partition."""
    return [
        Entry(
            topic=names.short(m.topic),
            partition=m.partition,
            offset=m.offset,
            key=m.key or b"",
            value=m.value or b"",
            headers=tuple(m.headers),
            timestamp_ms=m.timestamp,
        )
        for _, messages in sorted(batches.items(), key=lambda item: (item[0].topic, item[0].partition))
        for m in messages
    ]


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Tells the group member's owner which partitions it now holds."""

    def __init__(self, names: TopicNames, on_assign: AssignCallback | None) -> None:
        self.names = names
        self.on_assign = on_assign

    async def on_partitions_revoked(self, revoked: Any) -> None:
        """Nothing to do: offsets are committed only after processing, by the owner."""

    async def on_partitions_assigned(self, assigned: Any) -> None:
        if self.on_assign is not None:
            pairs = sorted((self.names.short(tp.topic), tp.partition) for tp in assigned)
            await self.on_assign(pairs)


class KafkaGroupConsumer:
    """A member of a Kafka consumer group with manual commits."""

    def __init__(
        self,
        config: KafkaConfig,
        names: TopicNames,
        topics: Sequence[str],
        group: str,
        on_assign: AssignCallback | None,
    ) -> None:
        self.config = config
        self.names = names
        self.topics = tuple(topics)
        self.group = group
        self.on_assign = on_assign
        self._consumer: Any = None
        self._committed: dict[ShortPartition, int] = {}

    async def start(self) -> None:
        options = {**connection_options(self.config), "request_timeout_ms": GROUP_REQUEST_TIMEOUT_MS}
        consumer = AIOKafkaConsumer(
            **options,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=self.config.group_session_timeout_ms,
            rebalance_timeout_ms=self.config.group_session_timeout_ms,
            heartbeat_interval_ms=self.config.group_heartbeat_interval_ms,
        )
        consumer.subscribe([self.names.full(t) for t in self.topics], listener=_Listener(self.names, self.on_assign))
        joining_s = 3 * self.config.group_session_timeout_ms / 1000  # start() waits for the group to settle
        try:
            await start_bounded(consumer, self.config.connect_timeout_ms / 1000 + joining_s)
        except KafkaError as exc:
            raise LogUnavailable(f"kafka consumer for group {self.group}: {exc}") from exc
        self._consumer = consumer

    async def stop(self, timeout: float) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is None:
            return
        try:
            await asyncio.wait_for(consumer.stop(), timeout)
        except (TimeoutError, KafkaError) as exc:
            logger.warning("kafka consumer for group %s did not stop cleanly: %r", self.group, exc)

    async def fetch(self, *, max_records: int, timeout_s: float) -> list[Entry]:
        """Next records of the partitions this member holds; empty after `timeout_s` with none."""
        try:
            batches = await self._consumer.getmany(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        except KafkaError as exc:
            raise LogUnavailable(f"kafka fetch failed: {exc!r}") from exc
        return to_entries(self.names, batches)

    async def commit(self, offsets: Mapping[ShortPartition, int]) -> None:
        """Commit, per (topic, partition), the next offset to read; raise `LogUnavailable` if Kafka refuses."""
        if not offsets:
            return
        kafka_offsets = {TopicPartition(self.names.full(t), p): n for (t, p), n in offsets.items()}
        try:
            await asyncio.wait_for(self._consumer.commit(kafka_offsets), self.config.request_timeout_ms / 1000)
        except (TimeoutError, KafkaError) as exc:
            raise LogUnavailable(f"kafka commit failed for group {self.group}: {exc!r}") from exc
        self._committed.update(offsets)

    async def lag(self) -> dict[ShortPartition, int]:
        """Records past this member's last commit, per partition it holds and has committed in.

        From the high-water marks of the latest fetches: no request to the broker.
        """
        consumer = self._consumer
        if consumer is None:
            return {}
        lag = {}
        for tp in consumer.assignment():
            short = (self.names.short(tp.topic), tp.partition)
            highwater = consumer.highwater(tp)
            if highwater is not None and short in self._committed:
                lag[short] = max(0, highwater - self._committed[short])
        return lag


async def read_topic(
    config: KafkaConfig, names: TopicNames, topic: str, *, from_beginning: bool, follow: bool
) -> AsyncIterator[Entry]:
    """Every partition of `topic`, without a group; without `follow`, up to the end offsets at the start.

    Without `follow` the read is bounded: every request to the broker, and every
    wait for the next records, is limited by `request_timeout_ms`; a broker that
    stops answering ends the read with `LogUnavailable`. With `follow` it waits for
    the broker to come back, and a partition that restarted below the position
    read (a broker replaced by an empty one) is read again from its beginning.
    """
    reset = "none" if follow else "latest"  # following: an offset out of range is a replaced log, handled here
    consumer = AIOKafkaConsumer(
        **connection_options(config), group_id=None, enable_auto_commit=False, auto_offset_reset=reset
    )
    name = names.full(topic)
    try:
        await start_bounded(consumer, config.connect_timeout_ms / 1000)
    except KafkaError as exc:
        raise LogUnavailable(f"cannot read {name}: {exc}") from exc
    step = None if follow else config.request_timeout_ms / 1000
    try:
        partitions = await _bounded(_partitions(consumer, name, wait=follow), step, name)
        if not partitions:  # the topic does not exist (yet): nothing to read, and aiokafka refuses to seek nothing
            return
        consumer.assign(partitions)
        seek = consumer.seek_to_beginning if from_beginning else consumer.seek_to_end
        await _bounded(seek(*partitions), step, name)
        if follow:
            async for entry in _follow(consumer, names, partitions, config.request_timeout_ms / 1000):
                yield entry
            return
        ends = await _bounded(consumer.end_offsets(partitions), step, name)
        async for entry in _drain(consumer, names, partitions, ends, step):
            yield entry
    finally:
        await _close(consumer)


async def _close(consumer: Any) -> None:
    """Stop a reader within 2 s; its own troubles with a dead broker end here, not in the caller."""
    stopping = asyncio.ensure_future(consumer.stop())
    done, _ = await asyncio.wait({stopping}, timeout=2.0)
    if not done:
        stopping.cancel()
    stopping.add_done_callback(_observe)


def _observe(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


async def _bounded(step: Awaitable[T], timeout: float | None, name: str) -> T:
    """`step`, within `timeout` seconds (None: no limit); a broker that does not answer is `LogUnavailable`."""
    try:
        return await asyncio.wait_for(step, timeout)
    except (TimeoutError, KafkaError) as exc:
        raise LogUnavailable(f"cannot read {name}: kafka did not answer ({exc!r})") from exc


async def _partitions(consumer: Any, name: str, *, wait: bool) -> list[Any]:
    """The topic's partitions; when following a topic that does not exist yet, wait for it."""
    while True:
        await consumer.topics()  # refreshes metadata
        found = consumer.partitions_for_topic(name)
        if found or not wait:
            return [TopicPartition(name, p) for p in sorted(found or ())]
        await asyncio.sleep(POLL_MS / 1000)


async def _drain(
    consumer: Any, names: TopicNames, partitions: list[Any], ends: dict[Any, int] | None, stall: float | None
) -> AsyncIterator[Entry]:
    """Entries until `ends` (or forever); with `stall`, `LogUnavailable` after that long without progress."""
    remaining = list(partitions)
    quiet_since = time.monotonic()
    while remaining:
        if ends is not None:
            name = remaining[0].topic
            remaining = [tp for tp in remaining if await _bounded(consumer.position(tp), stall, name) < ends[tp]]
            if not remaining:
                return
        entries = to_entries(names, await consumer.getmany(*remaining, timeout_ms=POLL_MS))
        if entries:
            quiet_since = time.monotonic()
        elif stall is not None and time.monotonic() - quiet_since > stall:
            left = {f"{tp.topic}[{tp.partition}]": ends[tp] for tp in remaining} if ends else {}
            raise LogUnavailable(f"kafka stopped answering before the end offsets {left} were read")
        for entry in entries:
            yield entry


async def _follow(consumer: Any, names: TopicNames, partitions: list[Any], timeout: float) -> AsyncIterator[Entry]:
    """Entries forever, through broker outages and replacements (each said once, as a warning)."""
    watch = _Watch(consumer, partitions, timeout)
    quiet_since = time.monotonic()
    while True:
        try:
            entries = to_entries(names, await consumer.getmany(*partitions, timeout_ms=POLL_MS))
        except OffsetOutOfRangeError as exc:
            await watch.restarted(list(exc.args[0]) if exc.args and isinstance(exc.args[0], dict) else partitions)
            continue
        if entries:
            quiet_since = time.monotonic()
            watch.reachable()
        elif time.monotonic() - quiet_since > PROBE_S:
            quiet_since = time.monotonic()
            await watch.probe()
        for entry in entries:
            yield entry


class _Watch:
    """What a follower knows of the broker: whether it answers, and whether a partition restarted."""

    def __init__(self, consumer: Any, partitions: list[Any], timeout: float) -> None:
        self.consumer = consumer
        self.partitions = partitions
        self.timeout = timeout
        self.lost: str | None = None  # why the broker is unreachable, while it is

    async def probe(self) -> None:
        """Ask for the end offsets: an unreachable broker is said once; a partition now shorter than read restarted."""
        name = self.partitions[0].topic
        try:
            behind = await _bounded(self._behind(), self.timeout, name)
        except (LogUnavailable, KafkaError) as exc:
            if self.lost is None:
                self.lost = str(exc)
                logger.warning("kafka unreachable (%s); following %s again once it is back", exc, name)
            return
        self.reachable()
        if behind:
            await self.restarted(behind)

    async def _behind(self) -> list[Any]:
        ends = await self.consumer.end_offsets(self.partitions)
        return [tp for tp in self.partitions if ends[tp] < await self.consumer.position(tp)]

    def reachable(self) -> None:
        if self.lost is not None:
            self.lost = None
            logger.warning("kafka reachable again; following %s", self.partitions[0].topic)

    async def restarted(self, partitions: list[Any]) -> None:
        """Partitions whose log restarted below our position (a replaced broker): read them from their beginning."""
        self.reachable()
        for tp in partitions:
            logger.warning(
                "%s[%d] restarted below the offset read (the broker was replaced?): reading it from its beginning",
                tp.topic,
                tp.partition,
            )
        await self.consumer.seek_to_beginning(*partitions)
