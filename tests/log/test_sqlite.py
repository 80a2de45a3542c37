"""The embedded log: durability, group commit, reading, and consumer groups."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from clickbus.errors import LogUnavailable
from clickbus.log.port import Entry, Topic
from clickbus.log.sqlite import EmbeddedLog


@pytest.fixture
async def log(tmp_path: Path) -> AsyncIterator[EmbeddedLog]:
    log = EmbeddedLog(tmp_path / "log.sqlite3")
    await log.start()
    yield log
    await log.stop(5)


async def read_all(log: EmbeddedLog, topic: str = Topic.CLICKS) -> list[Entry]:
    return [e async for e in log.read(topic, from_beginning=True, follow=False)]


async def test_append_is_durable_and_read_back_in_order(log: EmbeddedLog) -> None:
    await asyncio.gather(*(log.append(Topic.CLICKS, b"k%d" % i, b"v%d" % i, [("kind", b"click")]) for i in range(50)))
    entries = await read_all(log)
    assert [e.value for e in entries] == [b"v%d" % i for i in range(50)]
    assert entries[0].header("kind") == b"click" and entries[0].key == b"k0"
    assert [e.offset for e in entries] == sorted(e.offset for e in entries)
    # committed to the file: a fresh connection sees every row
    rows = sqlite3.connect(log.path).execute("SELECT COUNT(*) FROM topic_clicks").fetchone()
    assert rows == (50,)


async def test_concurrent_appends_share_commits(log: EmbeddedLog, monkeypatch: pytest.MonkeyPatch) -> None:
    commits = 0
    original = log._wakeup.fire

    def counting_fire() -> None:
        nonlocal commits
        commits += 1
        original()

    monkeypatch.setattr(log._writer, "on_commit", counting_fire)
    await asyncio.gather(*(log.append(Topic.CLICKS, b"k", b"v") for _ in range(500)))
    assert len(await read_all(log)) == 500
    assert commits < 500  # group commit: many appends per fsync


async def test_topics_are_separate(log: EmbeddedLog) -> None:
    await log.append(Topic.CLICKS, b"k", b"click")
    await log.append(Topic.IMPRESSIONS, b"k", b"impression")
    assert [e.value for e in await read_all(log, Topic.IMPRESSIONS)] == [b"impression"]


async def test_read_without_beginning_starts_at_the_end(log: EmbeddedLog) -> None:
    await log.append(Topic.CLICKS, b"k", b"old")
    assert [e async for e in log.read(Topic.CLICKS, from_beginning=False, follow=False)] == []


async def test_follow_sees_new_records(log: EmbeddedLog) -> None:
    async def first_new() -> bytes:
        async for entry in log.read(Topic.CLICKS, from_beginning=False, follow=True):
            return entry.value
        raise AssertionError("follow ended")

    task = asyncio.create_task(first_new())
    await asyncio.sleep(0.1)
    await log.append(Topic.CLICKS, b"k", b"new")
    assert await asyncio.wait_for(task, 5) == b"new"


async def test_append_after_stop_is_refused(log: EmbeddedLog) -> None:
    await log.stop(5)
    assert not log.health.ready
    with pytest.raises(LogUnavailable):
        await log.append(Topic.CLICKS, b"k", b"v")


async def test_write_failure_is_reported_not_swallowed(log: EmbeddedLog) -> None:
    conn = sqlite3.connect(log.path)
    conn.execute("DROP TABLE topic_clicks")
    conn.commit()
    with pytest.raises(LogUnavailable):
        await log.append(Topic.CLICKS, b"k", b"v")
    assert not log.health.ready and "write failed" in log.health.reason


async def test_consumer_resumes_from_committed_offsets(log: EmbeddedLog) -> None:
    for i in range(5):
        await log.append(Topic.CLICKS, b"k", b"%d" % i)
    assigned: list[object] = []

    async def on_assign(partitions: object) -> None:
        assigned.append(partitions)

    consumer = log.consumer([Topic.CLICKS], "g", on_assign=on_assign)
    await consumer.start()
    assert assigned == [[(Topic.CLICKS, 0)]]
    got = await consumer.fetch(max_records=3, timeout_s=1)
    assert [e.value for e in got] == [b"0", b"1", b"2"]
    await consumer.commit({(Topic.CLICKS, 0): got[-1].offset + 1})
    await consumer.stop(1)

    again = log.consumer([Topic.CLICKS], "g")
    await again.start()
    assert [e.value for e in await again.fetch(max_records=10, timeout_s=1)] == [b"3", b"4"]
    assert await again.fetch(max_records=10, timeout_s=0.1) == []
    other_group = log.consumer([Topic.CLICKS], "other")
    await other_group.start()
    assert len(await other_group.fetch(max_records=10, timeout_s=1)) == 5


async def test_consumer_wakes_on_append(log: EmbeddedLog) -> None:
    consumer = log.consumer([Topic.CLICKS], "g")
    await consumer.start()
    fetch = asyncio.create_task(consumer.fetch(max_records=10, timeout_s=5))
    await asyncio.sleep(0.05)
    await log.append(Topic.CLICKS, b"k", b"late")
    assert [e.value for e in await asyncio.wait_for(fetch, 2)] == [b"late"]
