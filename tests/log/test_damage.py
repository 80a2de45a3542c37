"""The embedded log on damaged disks: no offset given twice after a cut tail, a corrupt frame costs only itself.

Faults are made in the real segment files, as a disk or an operator would: a tail cut short
while the log is stopped, one byte flipped in the active or in a closed segment while
appends and a consumer group run.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import orjson
import pytest

from clickbus.log import EmbeddedLog, Topic
from clickbus.log.embedded_consumer import EmbeddedConsumer
from clickbus.log.port import Entry
from clickbus.log.segment import bases, partition_dir, segment_path
from clickbus.log.spool_format import read_frames
from clickbus.metrics import default_metrics

GROUP = "g"
TP = (Topic.CLICKS.value, 0)


def clicks_dir(root: Path) -> Path:
    return partition_dir(root, Topic.CLICKS, 0)


def corrupt_count() -> float:
    return default_metrics().registry.get_sample_value("clickbus_log_corrupt_records_total", {"topic": "clicks"}) or 0


async def append_range(log: EmbeddedLog, first: int, count: int, size: int = 40) -> None:
    for n in range(first, first + count):
        await log.append(Topic.CLICKS, b"k", orjson.dumps({"n": n, "pad": "x" * size}))


def n_of(entry: Entry) -> int:
    return int(orjson.loads(entry.value)["n"])


async def consume(consumer: EmbeddedConsumer, until: int) -> list[Entry]:
    """Fetch and commit until the record numbered `until - 1` has come."""
    got: list[Entry] = []
    async with asyncio.timeout(30):
        while not got or max(map(n_of, got)) < until - 1:
            batch = await consumer.fetch(max_records=50, timeout_s=0.2)
            if batch:
                await consumer.commit({TP: batch[-1].offset + 1})
            got += batch
    return got


async def started_log(root: Path, *, segment_bytes: int = 1 << 20, partition: int | None = None) -> EmbeddedLog:
    log = EmbeddedLog(root, segment_bytes=segment_bytes, partition=partition)
    await log.start()
    return log


async def consumed_then_stopped(root: Path, count: int) -> None:
    """`count` records appended, consumed and committed by the group, and the log stopped cleanly."""
    log = await started_log(root)
    await append_range(log, 0, count)
    consumer = log.consumer([Topic.CLICKS], GROUP)
    await consumer.start()
    await consume(consumer, count)
    await consumer.stop(5)  # a member holds its partitions until it stops
    await log.stop(5)


def cut_tail(root: Path, size: int) -> None:
    segment = segment_path(clicks_dir(root), bases(clicks_dir(root))[-1])
    os.truncate(segment, segment.stat().st_size - size)


async def test_after_a_cut_tail_new_appends_under_load_get_offsets_above_the_commit(tmp_path: Path) -> None:
    root = tmp_path / "log"
    await consumed_then_stopped(root, 200)
    cut_tail(root, 400)  # about five records, consumed and committed
    (clicks_dir(root) / "high-water").unlink(missing_ok=True)  # the commit alone must be enough

    log = await started_log(root)
    consumer = log.consumer([Topic.CLICKS], GROUP)
    await consumer.start()
    appending = asyncio.ensure_future(append_range(log, 1000, 100))  # the load runs while the group reads
    got = await consume(consumer, 1100)
    await appending
    await log.stop(5)
    assert [n_of(e) for e in got] == list(range(1000, 1100))  # every new record consumed, none skipped
    assert min(e.offset for e in got) >= 200  # none below the committed 200: no offset given twice


async def test_without_commits_the_high_water_mark_keeps_offsets_unique(tmp_path: Path) -> None:
    root = tmp_path / "log"
    log = await started_log(root)
    await append_range(log, 0, 50)
    await log.stop(5)
    cut_tail(root, 400)
    again = await started_log(root)
    await append_range(again, 50, 1)
    entries = [e async for e in again.read(Topic.CLICKS, from_beginning=True, follow=False)]
    await again.stop(5)
    assert entries[-1].offset == 50 and n_of(entries[-1]) == 50
    assert len({e.offset for e in entries}) == len(entries)


async def test_a_commit_past_the_end_resets_to_the_end_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "log"
    await consumed_then_stopped(root, 200)
    cut_tail(root, 400)
    reader = await started_log(root)  # a process that only reads (a standalone notifier): it opens no writer
    consumer = reader.consumer([Topic.CLICKS], GROUP)
    await consumer.start()
    with caplog.at_level(logging.WARNING):
        assert await consumer.fetch(max_records=10, timeout_s=0.2) == []
    assert any("past the end" in r.getMessage() for r in caplog.records)
    writer = await started_log(root, partition=0)  # the edge starts later
    await append_range(writer, 500, 3)
    got = await consume(consumer, 503)
    await writer.stop(5)
    await reader.stop(5)
    assert [(e.offset, n_of(e)) for e in got] == [(200, 500), (201, 501), (202, 502)]


def flip_byte(segment: Path, offset: int) -> None:
    """Flip one byte inside the payload of the frame holding `offset`."""
    raw = segment.read_bytes()
    frame = next(f for f in read_frames(raw) if f.seq == offset)
    with segment.open("r+b") as out:
        at = frame.end - len(frame.payload) // 2
        out.seek(at)
        out.write(bytes([raw[at] ^ 0x40]))


async def test_a_flipped_byte_in_the_active_segment_at_open_costs_one_record(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "log"
    log = await started_log(root)
    await append_range(log, 0, 300)  # several index entries: the damage lies before the last one
    await log.stop(5)
    flip_byte(segment_path(clicks_dir(root), 0), 20)
    before = corrupt_count()
    with caplog.at_level(logging.ERROR):
        again = await started_log(root)
        await append_range(again, 300, 1)  # opening the partition checks every frame
    assert any("offsets 20-20" in r.getMessage() for r in caplog.records)
    assert corrupt_count() - before == 1
    assert again.health.ready and again.health.warnings == ("clicks[0] offsets 20-20 corrupt, skipped",)
    consumer = again.consumer([Topic.CLICKS], GROUP)
    await consumer.start()
    got = await consume(consumer, 301)
    await again.stop(5)
    assert [n_of(e) for e in got] == [n for n in range(301) if n != 20]
    assert [e.offset for e in got] == [n for n in range(301) if n != 20]


@pytest.mark.parametrize("where", ["active", "closed"])
async def test_a_byte_flipped_under_load_costs_only_its_record(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, where: str
) -> None:
    root = tmp_path / "log"
    log = await started_log(root, segment_bytes=1 << 20 if where == "active" else 8192)
    await append_range(log, 0, 100)
    consumer = log.consumer([Topic.CLICKS], GROUP)
    await consumer.start()
    first = await consume(consumer, 10)  # the group is part way, the rest lies ahead of it
    await append_range(log, 100, 60 if where == "active" else 200)
    segments = bases(clicks_dir(root))
    base = segments[-1] if where == "active" else next(b for b in segments[:-1] if b > first[-1].offset + 1)
    victim = max(base, first[-1].offset + 1) + 20
    flip_byte(segment_path(clicks_dir(root), base), victim)
    before = corrupt_count()
    appending = asyncio.ensure_future(append_range(log, 1000, 50))  # the load goes on meanwhile
    with caplog.at_level(logging.ERROR):
        rest = await consume(consumer, 1050)
    await appending
    await log.stop(5)
    numbers = sorted(n_of(e) for e in first + rest)
    total = 160 if where == "active" else 300
    assert numbers == [n for n in [*range(total), *range(1000, 1050)] if n != victim]
    assert corrupt_count() - before == 1
    assert any(f"offsets {victim}-{victim}" in r.getMessage() for r in caplog.records)
