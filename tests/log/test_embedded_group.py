"""The embedded log's consumer group gives each partition to one member: no record is read by two members.

Before the fix every member read every partition, so N notifiers in one group (orphans of a killed
supervisor, or a second `clickbus notifier`) delivered each click N times.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import orjson
import pytest

from clickbus.log import EmbeddedLog, Topic
from clickbus.log.embedded_consumer import DISCOVER_S, EmbeddedConsumer
from clickbus.log.port import Entry, TopicPartition
from clickbus.notifier import Notifier
from tests.notifier.factory import append, click
from tests.support.bidder import BidderStub
from tests.support.configs import notifier_config
from tests.support.waiting import eventually, eventually_async

PARTITIONS = 4
_numbers = itertools.count()


@pytest.fixture
async def writers(tmp_path: Path) -> AsyncIterator[list[EmbeddedLog]]:
    """One writer per partition on one log directory, as the workers of one run are."""
    logs = [EmbeddedLog(tmp_path / "log", partition=p) for p in range(PARTITIONS)]
    for log in logs:
        await log.start()
    yield logs
    for log in logs:
        await log.stop(5.0)


async def write(log: EmbeddedLog, count: int) -> None:
    for _ in range(count):
        await log.append(Topic.CLICKS, b"k", orjson.dumps({"n": next(_numbers)}))


class Member:
    """A group member and everything it has read."""

    def __init__(self, log: EmbeddedLog) -> None:
        self.consumer: EmbeddedConsumer = log.consumer([Topic.CLICKS], "notifier", on_assign=self._assigned)
        self.held: set[TopicPartition] = set()
        self.read: list[Entry] = []

    async def _assigned(self, tps: Sequence[TopicPartition]) -> None:
        self.held = set(tps)

    async def fetch(self) -> int:
        """Read what there is now, and commit it."""
        batch = await self.consumer.fetch(max_records=500, timeout_s=0.05)
        self.read += batch
        if batch:
            await self.consumer.commit({(e.topic, e.partition): e.offset + 1 for e in batch})
        return len(batch)


def readings(*members: Member) -> Counter[tuple[int, int]]:
    return Counter((e.partition, e.offset) for member in members for e in member.read)


async def test_two_members_split_the_partitions_and_read_each_record_once(writers: list[EmbeddedLog]) -> None:
    await write(writers[0], 10)
    await write(writers[1], 10)
    first, second = Member(writers[0]), Member(writers[0])
    await first.consumer.start()
    await second.consumer.start()
    assert first.held == {(Topic.CLICKS, 0), (Topic.CLICKS, 1)}
    assert second.held == set()  # a standby: both partitions are held

    await write(writers[2], 10)  # partitions that appear later go to whoever finds them free first
    await write(writers[3], 10)
    await eventually_async(second.fetch, timeout_s=5 * DISCOVER_S)
    assert second.held == {(Topic.CLICKS, 2), (Topic.CLICKS, 3)}
    await write(writers[0], 5)

    async def all_read() -> bool:
        await first.fetch()
        await second.fetch()
        return sum(readings(first, second).values()) >= 45

    await eventually_async(all_read, timeout_s=10.0)
    assert first.held | second.held == {(Topic.CLICKS, p) for p in range(PARTITIONS)}
    assert not first.held & second.held
    assert max(readings(first, second).values()) == 1, "a record read by two members"

    await first.consumer.stop(5.0)  # the standby takes over its partitions from its commits
    await write(writers[1], 5)
    await eventually_async(lambda: _read_all(second, first, 50), timeout_s=5 * DISCOVER_S + 5.0)
    assert second.held == {(Topic.CLICKS, p) for p in range(PARTITIONS)}
    assert max(readings(first, second).values()) == 1, "a record read again after the takeover"
    await second.consumer.stop(5.0)


async def _read_all(member: Member, other: Member, total: int) -> bool:
    await member.fetch()
    return sum(readings(member, other).values()) >= total


@pytest.mark.slow
async def test_two_notifiers_in_one_group_deliver_each_click_once(tmp_path: Path) -> None:
    """The issue's symptom: each stray notifier of a killed run read every partition and delivered every click."""
    stub = BidderStub()
    await stub.start()
    config = notifier_config(tmp_path, {13: {"click_uri": stub.url}})
    logs = [EmbeddedLog(tmp_path / "log", partition=p) for p in range(2)]
    for log in logs:
        await log.start()
    notifiers = [Notifier(config, logs[0]), Notifier(config, logs[0])]
    running: list[Notifier] = []
    try:
        for notifier in notifiers:
            await notifier.start()
            running.append(notifier)
        clicks = [click() for _ in range(40)]
        await append(logs[0], *clicks[:20])
        await append(logs[1], *clicks[20:])

        def delivered() -> Counter[str]:
            return Counter(r.webhook_id for r in stub.received if r.answered == "200")

        await eventually(lambda: len(delivered()) == 40, timeout_s=20.0)
        await running.pop(0).stop(5.0)  # the other takes its partitions over from its commits
        later = [click() for _ in range(10)]
        await append(logs[0], *later[:5])
        await append(logs[1], *later[5:])
        await eventually(lambda: len(delivered()) == 50, timeout_s=20.0)
        assert max(delivered().values()) == 1, "a click delivered twice"
        assert set(delivered()) == {c.click_id for c in clicks + later}
    finally:
        for notifier in running:
            await notifier.stop(5.0)
        for log in logs:
            await log.stop(5.0)
        await stub.stop()


async def test_a_partition_this_process_opens_is_read_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A member started before its topic's first append reads that append without waiting for the next look.

    Before, only the look every DISCOVER_S found the partition: on a fresh `clickbus run` the first click
    waited up to a second for the notifier, and its verdict another for the reporter (bench.reports saw its
    freshness go from 0.2 to 1.0 s in two runs of five).
    """
    monkeypatch.setattr("clickbus.log.embedded_consumer.DISCOVER_S", 3600.0)  # only the opening can find it
    log = EmbeddedLog(tmp_path / "log")
    await log.start()
    try:
        member = Member(log)
        await member.consumer.start()
        assert member.held == set()
        await write(log, 1)
        assert len(await member.consumer.fetch(max_records=10, timeout_s=2.0)) == 1
        assert member.held == {(Topic.CLICKS, log.partition)}
        await member.consumer.stop(1.0)
    finally:
        await log.stop(5.0)
