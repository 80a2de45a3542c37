"""What only the embedded log does: group commit, crash recovery, partition locks, segments, retention.

The port's common behaviour is in test_contract.py.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import orjson
import pytest

from clickbus.errors import LogUnavailable
from clickbus.log import EmbeddedLog, Topic
from clickbus.log.port import Entry
from clickbus.log.retention import Retention
from clickbus.log.segment import bases, partition_dir, segment_path
from clickbus.log.spool_format import SpooledRecord, encode_record, read_frames
from clickbus.logging_setup import ENV_WORKER
from clickbus.metrics import create_metrics
from tests.support.waiting import eventually

ROOT = str(Path(__file__).resolve().parents[2])


@pytest.fixture
async def log(tmp_path: Path) -> AsyncIterator[EmbeddedLog]:
    log = EmbeddedLog(tmp_path / "log")
    await log.start()
    yield log
    await log.stop(5)


async def read_all(log: EmbeddedLog, topic: str = Topic.CLICKS) -> list[Entry]:
    return [e async for e in log.read(topic, from_beginning=True, follow=False)]


async def append_n(log: EmbeddedLog, count: int, first: int = 0, size: int = 0) -> None:
    for n in range(first, first + count):
        await log.append(Topic.CLICKS, b"k", orjson.dumps({"n": n, "pad": "x" * size}))


def values(entries: list[Entry]) -> list[int]:
    return [int(orjson.loads(e.value)["n"]) for e in entries]


def clicks_dir(log: EmbeddedLog, partition: int = 0) -> Path:
    return partition_dir(log.path, Topic.CLICKS, partition)


async def test_concurrent_appends_share_fsyncs(log: EmbeddedLog, monkeypatch: pytest.MonkeyPatch) -> None:
    syncs = 0
    real = os.fdatasync

    def counting(fd: int) -> None:
        nonlocal syncs
        syncs += 1
        real(fd)

    await append_n(log, 1)  # the partition is open
    monkeypatch.setattr(os, "fdatasync", counting)
    await asyncio.gather(*(log.append(Topic.CLICKS, b"k", b'{"n": 0}') for _ in range(500)))
    assert len(await read_all(log)) == 501
    assert 0 < syncs < 50  # group commit: many appends per fdatasync


async def test_a_failed_sync_is_refused_reported_and_its_offsets_reused(
    log: EmbeddedLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    await append_n(log, 2)

    def failing(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", failing)
    with pytest.raises(LogUnavailable, match="write failed"):
        await append_n(log, 1, first=2)
    assert not log.health.ready and "write failed" in log.health.reason
    monkeypatch.undo()
    await append_n(log, 1, first=3)
    assert log.health.ready
    entries = await read_all(log)
    assert values(entries) == [0, 1, 3] and [e.offset for e in entries] == [0, 1, 2]


TORN = {
    "half a frame after the last": lambda frame: frame[: len(frame) // 2],
    "a whole frame of garbage": lambda frame: bytes(len(frame)),
}


@pytest.mark.parametrize("tear", TORN.values(), ids=TORN.keys())
async def test_a_torn_tail_is_cut_when_the_partition_is_opened(tmp_path: Path, tear: Callable[[bytes], bytes]) -> None:
    log = EmbeddedLog(tmp_path / "log")
    await log.start()
    await append_n(log, 10)
    await log.stop(5)
    segment = segment_path(clicks_dir(log), 0)
    intact = segment.stat().st_size
    frame = encode_record(SpooledRecord(10, "clicks", b"k", b'{"n": 10}', (), 0))
    segment.write_bytes(segment.read_bytes() + tear(frame))  # a crash in the middle of a write

    again = EmbeddedLog(tmp_path / "log")
    await again.start()
    await append_n(again, 1, first=11)
    raw = segment.read_bytes()
    assert [(f.seq, f.end) for f in read_frames(raw, intact)] == [(10, len(raw))]  # written where the tear began
    entries = await read_all(again)
    await again.stop(5)
    assert values(entries) == [*range(10), 11] and [e.offset for e in entries] == list(range(11))


async def test_a_corrupt_last_frame_is_cut_with_what_follows(tmp_path: Path) -> None:
    log = EmbeddedLog(tmp_path / "log")
    await log.start()
    await append_n(log, 5)
    await log.stop(5)
    segment = segment_path(clicks_dir(log), 0)
    raw = bytearray(segment.read_bytes())
    raw[-3] ^= 0xFF  # inside the last record: its CRC no longer matches
    segment.write_bytes(bytes(raw))
    again = EmbeddedLog(tmp_path / "log")
    await again.start()
    await append_n(again, 1, first=5)
    entries = await read_all(again)
    await again.stop(5)
    assert values(entries) == [0, 1, 2, 3, 5]


SIGKILLED_WRITER = """
import asyncio, sys
from pathlib import Path
from clickbus.log import EmbeddedLog, Topic

async def main(path):
    log = EmbeddedLog(Path(path))
    await log.start()
    n = 0
    while True:
        await asyncio.gather(*(log.append(Topic.CLICKS, b"k", b"%d" % i) for i in range(n, n + 50)))
        n += 50
        print(n, flush=True)  # every record below n is answered

asyncio.run(main(sys.argv[1]))
"""


def start_writer(path: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.Popen([sys.executable, "-c", SIGKILLED_WRITER, str(path)], stdout=subprocess.PIPE, env=env)


@pytest.mark.slow
async def test_a_sigkilled_writer_loses_nothing_it_answered(tmp_path: Path) -> None:
    writer = start_writer(tmp_path / "log")
    assert writer.stdout is not None
    answered = 0
    while answered < 2000:
        line = await asyncio.to_thread(writer.stdout.readline)
        assert line, "the writer died"
        answered = int(line)
    writer.send_signal(signal.SIGKILL)
    writer.wait(10)
    writer.stdout.close()
    log = EmbeddedLog(tmp_path / "log")
    await log.start()
    await log.append(Topic.CLICKS, b"k", b"-1")  # opening the partition recovers it
    entries = await read_all(log)
    await log.stop(5)
    got = [int(e.value) for e in entries]
    assert got[:answered] == list(range(answered)) and got[-1] == -1
    assert [e.offset for e in entries] == list(range(len(entries)))


async def test_two_writers_never_share_a_partition(tmp_path: Path) -> None:
    first, second = EmbeddedLog(tmp_path / "log"), EmbeddedLog(tmp_path / "log")
    await first.start()
    await second.start()
    await first.append(Topic.CLICKS, b"k", b'{"n": 1}')
    await second.append(Topic.CLICKS, b"k", b'{"n": 2}')
    entries = await read_all(first)
    assert sorted((e.partition, e.offset, values([e])[0]) for e in entries) == [(0, 0, 1), (1, 0, 2)]
    await first.stop(5)
    third = EmbeddedLog(tmp_path / "log")  # the lock went with the first writer: partition 0 is free again
    await third.start()
    await third.append(Topic.CLICKS, b"k", b'{"n": 3}')
    assert [(e.partition, e.offset) for e in await read_all(third) if values([e]) == [3]] == [(0, 1)]
    await third.stop(5)
    await second.stop(5)


async def test_a_worker_writes_the_partition_of_its_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_WORKER, "3")
    log = EmbeddedLog(tmp_path / "log")
    await log.start()
    await append_n(log, 1)
    assert {e.partition for e in await read_all(log)} == {3}
    await log.stop(5)


WRITER = """
import asyncio, sys
from pathlib import Path
from clickbus.log import EmbeddedLog, Topic

async def main(path, tag, count):
    log = EmbeddedLog(Path(path), segment_bytes=4096)
    await log.start()
    await log.append(Topic.CLICKS, b"k", f"{tag}-0".encode())  # its partition is taken
    print("ready", flush=True)
    sys.stdin.readline()  # every writer holds a partition at once
    await asyncio.gather(*(log.append(Topic.CLICKS, b"k", f"{tag}-{i}".encode()) for i in range(1, count)))
    await log.stop(10)

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


def run_writers(path: Path, count: int, processes: int) -> None:
    env = {**os.environ, "PYTHONPATH": ROOT}
    argv = [sys.executable, "-c", WRITER, str(path)]
    writers = [
        subprocess.Popen([*argv, f"p{n}", str(count)], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        for n in range(processes)
    ]
    try:
        for writer in writers:
            assert writer.stdout is not None and writer.stdout.readline() == b"ready\n"
        for writer in writers:
            assert writer.stdin is not None
            writer.stdin.write(b"go\n")
            writer.stdin.close()
        assert [w.wait(60) for w in writers] == [0] * processes
    finally:
        for writer in writers:
            if writer.poll() is None:
                writer.kill()
                writer.wait()
            if writer.stdout is not None:
                writer.stdout.close()


@pytest.mark.slow
async def test_writer_processes_each_take_a_partition_of_their_own_and_lose_nothing(tmp_path: Path) -> None:
    path, count = tmp_path / "log", 300
    await asyncio.to_thread(run_writers, path, count, 4)
    entries = await read_all(EmbeddedLog(path))
    by_partition: dict[int, list[Entry]] = {}
    for entry in entries:
        by_partition.setdefault(entry.partition, []).append(entry)
    assert sorted(by_partition) == [0, 1, 2, 3]
    for mine in by_partition.values():
        assert [e.offset for e in mine] == list(range(count))
        assert len({e.value.split(b"-")[0] for e in mine}) == 1  # one writer per partition
    assert {e.value.decode() for e in entries} == {f"p{n}-{i}" for n in range(4) for i in range(count)}


async def test_segments_roll_and_a_group_resumes_mid_log_even_with_a_garbage_index(tmp_path: Path) -> None:
    log = EmbeddedLog(tmp_path / "log", segment_bytes=2048)
    await log.start()
    await append_n(log, 200, size=40)
    found = bases(clicks_dir(log))
    assert len(found) > 5
    segment_path(clicks_dir(log), found[2], ".index").write_bytes(b"\xff" * 24)  # a hint that lies
    middle = found[2] + 3
    consumer = log.consumer([Topic.CLICKS], "g")
    await consumer.start()
    await consumer.commit({(Topic.CLICKS, 0): middle})
    await consumer.stop(5)  # it holds the partition until then
    resumed = log.consumer([Topic.CLICKS], "g")
    await resumed.start()
    got: list[Entry] = []
    while batch := await resumed.fetch(max_records=37, timeout_s=0.2):
        got += batch
    assert values(got) == list(range(middle, 200))
    assert values(await read_all(log)) == list(range(200))
    await log.stop(5)


def partition_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.glob("*.log"))


async def test_size_retention_deletes_old_segments_and_reports_what_a_group_lost(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = create_metrics()
    before = EmbeddedLog(tmp_path / "log", segment_bytes=2048)  # no retention yet: the groups commit first
    await before.start()
    await append_n(before, 300, size=40)
    for group, offset in (("behind", 5), ("done", 300)):
        await before.commit_offsets(group, {(Topic.CLICKS, 0): offset})
    await before.stop(5)
    log = EmbeddedLog(tmp_path / "log", segment_bytes=2048, retention=Retention(3600.0, 8192), metrics=metrics)
    await log.start()
    with caplog.at_level(logging.ERROR):
        await append_n(log, 1, first=300, size=40)
        await log.enforce_retention()
    directory = clicks_dir(log)
    oldest = bases(directory)[0]
    assert oldest > 5 and partition_bytes(directory) <= 8192
    lost = oldest - 5
    (record,) = [r for r in caplog.records if "had not consumed" in r.getMessage()]
    assert "behind" in record.getMessage() and f"clicks[0] offsets 5-{oldest - 1}" in record.getMessage()
    sample = {"group": "behind", "topic": "clicks"}
    assert metrics.registry.get_sample_value("clickbus_log_retention_lost_records_total", sample) == lost
    assert (
        metrics.registry.get_sample_value("clickbus_log_retention_lost_records_total", {**sample, "group": "done"})
        is None
    )
    resumed = log.consumer([Topic.CLICKS], "behind")  # it goes on from the oldest record left
    await resumed.start()
    assert values(await resumed.fetch(max_records=1, timeout_s=1)) == [oldest]
    assert values(await read_all(log)) == list(range(oldest, 301))
    await log.stop(5)


async def test_age_retention_deletes_every_old_closed_segment_but_never_the_active_one(tmp_path: Path) -> None:
    log = EmbeddedLog(tmp_path / "log", segment_bytes=2048, retention=Retention(3600.0, 1 << 40))
    await log.start()
    await append_n(log, 100, size=40)
    directory = clicks_dir(log)
    found = bases(directory)
    old = time.time() - 7200
    for base in found:
        os.utime(segment_path(directory, base), (old, old))
    await log.enforce_retention()
    assert bases(directory) == found[-1:]
    await append_n(log, 1, first=100)
    assert values(await read_all(log)) == list(range(found[-1], 101))
    await log.stop(5)


async def test_a_roll_triggers_retention_without_waiting_for_the_periodic_check(tmp_path: Path) -> None:
    log = EmbeddedLog(tmp_path / "log", segment_bytes=1024, retention=Retention(3600.0, 4096), retention_check_s=3600)
    await log.start()
    directory = clicks_dir(log)
    await append_n(log, 200, size=40)
    await eventually(lambda: partition_bytes(directory) <= 4096, timeout_s=10)
    await log.stop(5)


async def test_readers_in_the_writing_process_see_a_record_only_once_it_is_synced(
    log: EmbeddedLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    # what an OS crash could still take back must not reach the notifier: its offset would be reused
    await append_n(log, 1)
    release = threading.Event()
    real = os.fdatasync

    def held(fd: int) -> None:
        release.wait(10)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", held)
    appending = asyncio.ensure_future(append_n(log, 1, first=1))
    await asyncio.sleep(0.1)  # written to the segment, its sync held
    assert values(await read_all(log)) == [0]
    release.set()
    await asyncio.wait_for(appending, 10)
    assert values(await read_all(log)) == [0, 1]


# -- wakeups: a reader waits for its own topics only ---------------------------------------


async def test_a_reader_is_woken_by_its_topic_and_not_by_others(log: EmbeddedLog) -> None:
    """The notifier reading clicks must not wake for its own outcome appends (each wake reads every partition)."""
    waiting = asyncio.ensure_future(log.wait_for_append([Topic.CLICKS], 5.0))
    await asyncio.sleep(0)
    await log.append(Topic.DELIVERIES, b"k", b"v")  # synced, and no wake for a reader of clicks
    await asyncio.sleep(0.05)
    assert not waiting.done()
    started = time.monotonic()
    await log.append(Topic.CLICKS, b"k", b"v")
    await asyncio.wait_for(waiting, 1.0)
    assert time.monotonic() - started < 1.0  # woken by the sync, not by its 5 s timeout


async def test_waiters_on_a_quiet_topic_do_not_pile_up(log: EmbeddedLog) -> None:
    """A consumer of clicks and impressions waits on both: impressions never firing must not keep every waiter."""
    for _ in range(50):
        waiting = asyncio.ensure_future(log.wait_for_append([Topic.CLICKS, Topic.IMPRESSIONS], 5.0))
        await asyncio.sleep(0)
        await log.append(Topic.CLICKS, b"k", b"v")
        await asyncio.wait_for(waiting, 1.0)
    for _ in range(5):
        await log.wait_for_append([Topic.IMPRESSIONS], 0.001)  # timeouts leave nothing behind either
    assert sum(len(waiters) for waiters in log._wakeup._waiters.values()) == 0
