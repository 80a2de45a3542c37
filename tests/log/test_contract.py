"""The log port's contract, run against both adapters: the embedded log on a temp dir, Kafka on Tansu.

Whatever a caller may rely on is here: append/read/consume/commit/replay, order within a
partition, group offsets, the health flag and bounded stops. What only one adapter does
(torn tails, locks, retention; spooling) is tested beside it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from clickbus.errors import LogUnavailable
from clickbus.log import EmbeddedLog, open_log
from clickbus.log.port import Consumer, Entry, Log, Topic, TopicPartition
from clickbus.notifier.consumer import Lagging
from tests.support import configs

KEYS = [b"user%d" % i for i in range(5)]
STOP_S = 5.0


@dataclass(frozen=True, slots=True)
class Backend:
    """How to build a log on one backend's storage (each build sees what earlier ones wrote)."""

    name: str
    build: Callable[[], Log]


@pytest.fixture(params=["embedded", "kafka"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "kafka":
        broker = request.getfixturevalue("kafka_broker")
        config = configs.kafka_config(tmp_path, broker.bootstrap)
        return Backend("kafka", lambda: open_log(config))
    return Backend("embedded", lambda: EmbeddedLog(tmp_path / "log"))


@pytest.fixture
async def log(backend: Backend) -> AsyncIterator[Log]:
    log = backend.build()
    await log.start()
    yield log
    await log.stop(STOP_S)


async def read_all(log: Log, topic: str = Topic.CLICKS) -> list[Entry]:
    return [e async for e in log.read(topic, from_beginning=True, follow=False)]


async def fetch_at_least(consumer: Consumer, n: int, timeout_s: float = 20.0) -> list[Entry]:
    """At least `n` records (all there are after a short final wait)."""
    got: list[Entry] = []
    async with asyncio.timeout(timeout_s):
        while len(got) < n:
            got += await consumer.fetch(max_records=100, timeout_s=0.5)
        got += await consumer.fetch(max_records=100, timeout_s=0.3)
    return got


def next_offsets(entries: Sequence[Entry]) -> dict[TopicPartition, int]:
    offsets: dict[TopicPartition, int] = {}
    for e in entries:
        offsets[(e.topic, e.partition)] = max(offsets.get((e.topic, e.partition), 0), e.offset + 1)
    return offsets


def numbers(entries: Sequence[Entry]) -> list[int]:
    return sorted(int(orjson.loads(e.value)["n"]) for e in entries)


async def append_numbered(log: Log, count: int, topic: str = Topic.CLICKS, first: int = 0) -> None:
    for n in range(first, first + count):
        await log.append(topic, KEYS[n % len(KEYS)], orjson.dumps({"n": n}), [("kind", b"click")])


async def test_records_read_back_whole_and_in_order_within_each_partition(log: Log) -> None:
    await append_numbered(log, 30)
    entries = await read_all(log)
    assert numbers(entries) == list(range(30))
    first = next(e for e in entries if orjson.loads(e.value)["n"] == 0)
    assert (first.key, first.header("kind"), first.header("absent")) == (KEYS[0], b"click", None)
    assert abs(first.timestamp_ms - time.time() * 1000) < 60_000
    for partition in {e.partition for e in entries}:
        mine = [e for e in entries if e.partition == partition]
        assert [e.offset for e in mine] == sorted(e.offset for e in mine)
        assert len({e.offset for e in mine}) == len(mine)
        assert [orjson.loads(e.value)["n"] for e in mine] == sorted(orjson.loads(e.value)["n"] for e in mine)
    by_key: dict[bytes, set[int]] = {}
    for e in entries:  # one key, one partition: every duplicate of a click meets the same dedup window
        by_key.setdefault(e.key, set()).add(e.partition)
    assert all(len(parts) == 1 for parts in by_key.values())


async def test_concurrent_appends_are_all_durable(log: Log) -> None:
    await asyncio.gather(*(log.append(Topic.CLICKS, b"k%d" % n, orjson.dumps({"n": n})) for n in range(200)))
    assert numbers(await read_all(log)) == list(range(200))


async def test_topics_are_separate_and_a_new_topic_works_on_first_use(log: Log) -> None:
    await log.append(Topic.CLICKS, b"k", orjson.dumps({"n": 1}))
    await log.append(Topic.IMPRESSIONS, b"k", orjson.dumps({"n": 2}))
    await log.append("clicks_retry_1", b"k", orjson.dumps({"n": 3}))
    assert numbers(await read_all(log, Topic.IMPRESSIONS)) == [2]
    assert numbers(await read_all(log, "clicks_retry_1")) == [3]
    assert {e.topic for e in await read_all(log, "clicks_retry_1")} == {"clicks_retry_1"}


async def test_reading_a_topic_nobody_wrote_yet_ends_at_once_and_empty(backend: Backend) -> None:
    # what a checker sees when it asks for the dead letters of a log that has none (a restarted Tansu is empty)
    assert await asyncio.wait_for(read_all(backend.build(), Topic.DLQ), 20) == []


async def test_read_from_the_end_stops_at_once_and_follow_sees_new_records(log: Log) -> None:
    await append_numbered(log, 3)
    assert [e async for e in log.read(Topic.CLICKS, from_beginning=False, follow=False)] == []
    follower = log.read(Topic.CLICKS, from_beginning=False, follow=True)
    nxt = asyncio.ensure_future(anext(follower))
    # new records until the follower, once positioned at the end, sees one (however long positioning takes)
    appended = await _append_until_read(log, nxt, timeout_s=10.0)
    entry = nxt.result()
    await follower.aclose()  # type: ignore[attr-defined]
    assert orjson.loads(entry.value)["n"] in appended


async def _append_until_read(log: Log, reader: asyncio.Future[Entry], timeout_s: float) -> list[int]:
    """Append clicks numbered from 100, one every 0.1 s, until `reader` has a record; the numbers appended."""
    appended: list[int] = []
    async with asyncio.timeout(timeout_s):
        while not reader.done():
            n = 100 + len(appended)
            await log.append(Topic.CLICKS, b"k%d" % n, orjson.dumps({"n": n}))
            appended.append(n)
            await asyncio.wait({reader}, timeout=0.1)
    return appended


async def test_a_group_resumes_after_its_commit_and_another_group_replays_everything(log: Log) -> None:
    await append_numbered(log, 30)
    assigned: list[TopicPartition] = []

    async def on_assign(partitions: Sequence[TopicPartition]) -> None:
        assigned.extend(partitions)

    first = log.consumer([Topic.CLICKS], "notifier", on_assign=on_assign)
    await first.start()
    got = await fetch_at_least(first, 30)
    assert numbers(got) == list(range(30))
    assert set(assigned) == {(Topic.CLICKS, e.partition) for e in got}
    await first.commit(next_offsets([e for e in got if orjson.loads(e.value)["n"] < 20]))
    await first.stop(STOP_S)

    second = log.consumer([Topic.CLICKS], "notifier")
    await second.start()
    assert numbers(await fetch_at_least(second, 10)) == list(range(20, 30))
    await second.stop(STOP_S)
    other = log.consumer([Topic.CLICKS], "replayer")
    await other.start()
    assert numbers(await fetch_at_least(other, 30)) == list(range(30))
    await other.stop(STOP_S)


async def test_commits_survive_a_new_log_on_the_same_storage(backend: Backend) -> None:
    log = backend.build()
    await log.start()
    await append_numbered(log, 10)
    consumer = log.consumer([Topic.CLICKS], "g")
    await consumer.start()
    await consumer.commit(next_offsets(await fetch_at_least(consumer, 10)))
    await consumer.stop(STOP_S)
    await log.stop(STOP_S)

    again = backend.build()
    await again.start()
    try:
        await append_numbered(again, 2, first=10)
        resumed = again.consumer([Topic.CLICKS], "g")
        await resumed.start()
        assert numbers(await fetch_at_least(resumed, 2)) == [10, 11]
        await resumed.stop(STOP_S)
    finally:
        await again.stop(STOP_S)


async def test_a_fetch_with_nothing_new_waits_its_timeout_and_wakes_on_an_append(log: Log) -> None:
    await append_numbered(log, 1)
    consumer = log.consumer([Topic.CLICKS], "g")
    await consumer.start()
    await fetch_at_least(consumer, 1)
    started = time.monotonic()
    assert await consumer.fetch(max_records=10, timeout_s=0.3) == []
    assert time.monotonic() - started >= 0.25
    fetching = asyncio.ensure_future(fetch_at_least(consumer, 1))
    await asyncio.sleep(0.2)
    await append_numbered(log, 1, first=7)
    assert numbers(await fetching) == [7]
    await consumer.stop(STOP_S)


async def test_lag_counts_what_the_group_has_not_committed(log: Log) -> None:
    await append_numbered(log, 10)
    consumer = log.consumer([Topic.CLICKS], "g")
    await consumer.start()
    await consumer.commit(next_offsets(await fetch_at_least(consumer, 10)))
    await append_numbered(log, 3, first=10)
    await fetch_at_least(consumer, 3)
    assert isinstance(consumer, Lagging)  # both adapters' consumers report lag
    lag = await consumer.lag()
    await consumer.stop(STOP_S)
    assert sum(lag.values()) == 3


async def test_health_is_ready_only_while_running_and_appends_after_stop_are_refused(backend: Backend) -> None:
    log = backend.build()
    assert not log.health.ready
    await log.start()
    await append_numbered(log, 1)
    assert log.health.ready
    await log.stop(STOP_S)
    assert not log.health.ready
    with pytest.raises(LogUnavailable):
        await log.append(Topic.CLICKS, b"k", b"{}")


async def test_stop_is_bounded_with_appends_and_a_fetch_in_flight(backend: Backend) -> None:
    log = backend.build()
    await log.start()
    await append_numbered(log, 1)
    consumer = log.consumer([Topic.CLICKS], "g")
    await consumer.start()
    fetching = asyncio.ensure_future(consumer.fetch(max_records=10, timeout_s=30))
    appends = asyncio.gather(*(log.append(Topic.CLICKS, b"k", b"{}") for _ in range(50)), return_exceptions=True)
    started = time.monotonic()
    await consumer.stop(1.0)
    await log.stop(1.0)
    assert time.monotonic() - started < 5.0
    await asyncio.wait_for(appends, 5)
    fetching.cancel()
    await asyncio.gather(fetching, return_exceptions=True)
