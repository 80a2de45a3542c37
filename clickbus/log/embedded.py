"""The embedded log, shaped like Kafka's: a directory of partitions of CRC-framed segment files.

Each writing process appends to a partition of its own per topic (worker i prefers
partition i; see `partition.py` for the group commit and the lock), so no process waits
for another to write. Readers (`clickbus tail`, the notifier's consumer group, `dlq`)
read every partition by offset; consumer groups commit per partition into
`offsets.sqlite3`. Old segments are deleted by retention (`retention.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from pathlib import Path

from clickbus import tasks
from clickbus.errors import LogUnavailable
from clickbus.log import damage
from clickbus.log import retention as retain
from clickbus.log.embedded_consumer import EmbeddedConsumer, Wakeup
from clickbus.log.group_offsets import GroupOffsets
from clickbus.log.partition import PartitionWriter, open_partition
from clickbus.log.port import AssignCallback, Entry, Headers, Health, Topic, TopicPartition
from clickbus.log.segment_reader import ReaderSet, log_end
from clickbus.metrics import Metrics, default_metrics
from clickbus.private_files import make_dirs
from clickbus.worker import worker_name

logger = logging.getLogger(__name__)

POLL_S = 0.05
READ_BATCH = 500
SWITCH_INTERVAL_S = 0.0002
OFFSETS_NAME = "offsets.sqlite3"
MB = 1024 * 1024
HOUR_S = 3600.0
DEFAULT_RETENTION = retain.Retention(168 * HOUR_S, 10240 * MB)
PROBE_NAME = ".writable"
PROBE_FAILING_S = 1.0  # while the log cannot write: how soon readiness sees that it can again
PROBE_IDLE_S = 10.0  # while no append has succeeded for this long: how soon it sees that it cannot


def worker_partition() -> int:
    """The partition this process prefers to write: its worker index under `--workers N`, else 0."""
    text = worker_name() or ""
    return int(text) if text.isdigit() else 0


class EmbeddedLog:
    """The log port on a local directory of partitions."""

    def __init__(
        self,
        path: Path,
        *,
        max_batch: int = 1024,
        topics: Sequence[str] = tuple(Topic),
        segment_bytes: int = 64 * MB,
        retention: retain.Retention = DEFAULT_RETENTION,
        retention_check_s: float = 60.0,
        partition: int | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.path = path
        self.max_batch = max_batch
        self.topics = tuple(topics)
        self.segment_bytes = segment_bytes
        self.retention = retention
        self.retention_check_s = retention_check_s
        self.partition = worker_partition() if partition is None else partition
        self._metrics = metrics
        self.offsets = GroupOffsets(path / OFFSETS_NAME)
        self._writers: dict[str, PartitionWriter] = {}
        self._opening: dict[str, asyncio.Lock] = {}
        self._wakeup = Wakeup()
        self.partitions_opened = 0  # partitions this process began writing: its consumers look for them at once
        self._running = False
        self._tasks: list[asyncio.Task[None]] = []
        self._roll = asyncio.Event()
        # Why the log cannot write, until a write succeeds: the last append's failure (any topic's: the
        # disk is shared), and the probe's, which only a probe clears (new files cannot be made).
        self._append_failure: str | None = None
        self._probe_failure: str | None = None
        self._appended = 0  # appends that succeeded: the probe skips the disk while they go on
        self._trouble = asyncio.Event()  # an append failed: the probe starts looking for the way back

    async def start(self) -> None:
        # The sync thread needs the GIL for a moment after each fdatasync to wake the loop; a short
        # switch interval lets it have it at once rather than after 5 ms of a busy loop.
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
        with contextlib.suppress(OSError):  # a read-only or full data_dir: the probe below says so, and retries
            await asyncio.to_thread(make_dirs, self.path)
        self._running = True
        await self.probe()  # a read-only or full data_dir: not ready (and saying why) from the start
        metrics = self._metrics
        self._tasks = [
            tasks.supervise("log-retention", self._retain_every, metrics=metrics),
            tasks.supervise("log-probe", self._probe_every, metrics=metrics),
        ]

    async def stop(self, timeout: float) -> None:
        """Sync what is queued and release every partition, waiting at most `timeout` seconds."""
        self._running = False
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        writers, self._writers = list(self._writers.values()), {}
        await asyncio.gather(*(w.close(timeout) for w in writers))
        await asyncio.to_thread(self.offsets.close)

    @property
    def health(self) -> Health:
        if not self._running:
            return Health(False, "embedded log is not running")
        failure = self._probe_failure or self._append_failure
        if failure is not None:
            return Health(False, failure)
        return Health(True, warnings=tuple(damage.reported(self.path)))

    async def append(self, topic: str, key: bytes, value: bytes, headers: Headers = ()) -> None:
        writer = self._writers.get(topic)
        try:
            if writer is None:
                writer = await self._open_writer(topic)
            await writer.append(key, value, headers)
        except LogUnavailable as exc:
            self._append_failed(exc)
            raise
        self._append_failure = None
        self._appended += 1

    async def append_many(self, topic: str, records: Sequence[tuple[bytes, bytes]]) -> list[BaseException | None]:
        """Append `records` (key, value) to one topic together: one future each, no task, one group when they fit.

        Returns each record's failure (a `LogUnavailable`), or None once it is durable, so a caller retries only
        the records that failed rather than writing the others twice.
        """
        writer = self._writers.get(topic)
        try:
            if writer is None:
                writer = await self._open_writer(topic)
            futures = [writer.append(key, value, ()) for key, value in records]
        except LogUnavailable as exc:
            self._append_failed(exc)
            return [exc] * len(records)
        results: list[BaseException | None] = []
        for future in futures:  # one group answers all its futures at once: after the first, most are done
            try:
                await future
            except Exception as exc:  # each record's failure is its result, as with gather's
                results.append(exc)
            else:
                results.append(None)
        failed = next((r for r in results if isinstance(r, LogUnavailable)), None)
        if failed is not None:
            self._append_failed(failed)
        else:
            self._append_failure = None
        self._appended += sum(r is None for r in results)
        return results

    async def append_at(self, topic: str, key: bytes, value: bytes, headers: Headers, timestamp_ms: int) -> None:
        """Append a record that keeps its own time (a migrated one)."""
        writer = self._writers.get(topic)
        try:
            if writer is None:
                writer = await self._open_writer(topic)
            await writer.append(key, value, headers, timestamp_ms)
        except LogUnavailable as exc:
            self._append_failed(exc)
            raise
        self._append_failure = None
        self._appended += 1

    def _append_failed(self, exc: LogUnavailable) -> None:
        if self._running:  # else the log is stopping: health says so already
            self._append_failure = str(exc)
            self._trouble.set()

    # -- writability -----------------------------------------------------------------------

    async def probe(self) -> bool:
        """Whether a new file can be written and synced in the log's directory now; readiness follows."""
        try:
            await asyncio.to_thread(_write_probe, self.path)
        except OSError as exc:
            if self._probe_failure is None:
                logger.error("embedded log cannot write in %s: %s", self.path, exc.strerror or exc)
            self._probe_failure = f"embedded log cannot write in {self.path}: {exc.strerror or exc}"
            return False
        if self._probe_failure is not None or self._append_failure is not None:
            logger.info("embedded log can write in %s again", self.path)
        self._probe_failure = self._append_failure = None
        return True

    async def _probe_every(self) -> None:
        seen = self._appended
        while True:
            if self._probe_failure is not None or self._append_failure is not None:
                await asyncio.sleep(PROBE_FAILING_S)
                await self.probe()
                continue
            self._trouble.clear()
            try:
                await asyncio.wait_for(self._trouble.wait(), PROBE_IDLE_S)
                continue  # an append failed: probe from now on until the disk takes writes
            except TimeoutError:
                pass
            if self._appended == seen:  # appends that succeed say the disk takes writes: no probe needed
                await self.probe()
            seen = self._appended

    async def _open_writer(self, topic: str) -> PartitionWriter:
        if not self._running:
            raise LogUnavailable("embedded log is not running")
        if not topic.isidentifier():
            raise LogUnavailable(f"embedded log: bad topic name {topic!r}")
        async with self._opening.setdefault(topic, asyncio.Lock()):
            if (writer := self._writers.get(topic)) is not None:
                return writer
            try:
                committed = functools.partial(self._highest_commit, topic)
                opened = await asyncio.to_thread(open_partition, self.path, topic, self.partition, committed)
            except OSError as exc:
                raise LogUnavailable(f"embedded log cannot open {topic}: {exc.strerror or exc}") from exc
            writer = PartitionWriter(
                topic,
                opened,
                segment_bytes=self.segment_bytes,
                max_batch=self.max_batch,
                on_synced=functools.partial(self._wakeup.fire, topic),
                on_roll=self._roll.set,
            )
            if not self._running:  # stopped while the partition was being opened
                await writer.close(0)
                raise LogUnavailable("embedded log is not running")
            self._writers[topic] = writer
            self.partitions_opened += 1
            return writer

    def _highest_commit(self, topic: str, partition: int) -> int:
        """The highest offset a group committed in the partition (blocking): the writer never gives one below it."""
        try:
            return max(self.offsets.groups(topic, partition).values(), default=0)
        except (OSError, sqlite3.Error) as exc:  # a full disk must not also stop the log: it writes again once freed
            logger.error(
                "embedded log: cannot read the commits of %s[%d] (%s); its high-water mark alone keeps offsets unique",
                topic,
                partition,
                exc,
            )
            return 0

    def limits(self) -> dict[TopicPartition, int]:
        """Per partition this process writes, the end of what is synced: readers here stop there."""
        return {(w.topic, w.partition): w.synced_end for w in self._writers.values()}

    async def end_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        limits = self.limits()
        ends = {}
        for tp in tps:
            ends[tp] = limits[tp] if tp in limits else await asyncio.to_thread(log_end, self.path, *tp)
        return ends

    async def commit_offsets(self, group: str, offsets: Mapping[TopicPartition, int]) -> None:
        if offsets:
            await asyncio.to_thread(self.offsets.commit, group, offsets)

    async def wait_for_append(self, topics: Iterable[str], timeout: float) -> None:
        """Until a record of `topics` is synced in this process, or `timeout` (other processes' records are polled)."""
        await self._wakeup.wait(topics, timeout)

    async def read(self, topic: str, *, from_beginning: bool, follow: bool) -> AsyncIterator[Entry]:
        """Every partition of `topic`, without a group; without `follow`, up to the ends at the start."""
        readers = ReaderSet(self.path, [topic])
        try:
            found = await asyncio.to_thread(readers.unknown)
            ends = await self.end_offsets(found)
            for tp in found:
                readers.add(tp, 0 if from_beginning else ends[tp])
            while True:
                if follow:
                    for tp in await asyncio.to_thread(readers.unknown):
                        readers.add(tp, 0)  # a partition born after the start holds only new records
                limits = self.limits() if follow else ends
                entries = await asyncio.to_thread(readers.read, READ_BATCH, limits)
                for entry in entries:
                    yield entry
                if not entries:
                    if not follow:
                        return
                    await self.wait_for_append((topic,), POLL_S)
        finally:
            readers.close()

    def consumer(
        self, topics: Sequence[str], group: str, *, on_assign: AssignCallback | None = None
    ) -> EmbeddedConsumer:
        return EmbeddedConsumer(self, topics, group, on_assign)

    # -- retention -------------------------------------------------------------------------

    async def _retain_every(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._roll.wait(), self.retention_check_s)
            self._roll.clear()
            try:
                await self.enforce_retention()
            except OSError as exc:  # retention is retried at the next check; appends go on
                logger.error("embedded log retention failed: %s", exc)
            # any other failure is a bug: tasks.supervise logs it with its traceback, counts it, restarts

    async def enforce_retention(self) -> None:
        """Delete the segments retention allows in every partition this process writes."""
        for writer in list(self._writers.values()):
            losses = await asyncio.to_thread(
                self._retain, writer.directory, writer.topic, writer.partition, writer.active_base
            )
            for loss in losses:
                self._report(writer.topic, writer.partition, loss)

    def _retain(self, directory: Path, topic: str, partition: int, active_base: int) -> list[retain.Lost]:
        closed = retain.closed_segments(directory, active_base)
        active = os.stat(directory / f"{active_base:020d}.log").st_size
        deleted = retain.doomed(closed, active, self.retention, time.time())
        if not deleted:
            return []
        losses = retain.lost(deleted, self.offsets.groups(topic, partition))
        retain.delete(directory, deleted)
        logger.info("embedded log %s: retention deleted offsets %d-%d", directory, deleted[0].base, deleted[-1].end - 1)
        return losses

    def _report(self, topic: str, partition: int, loss: retain.Lost) -> None:
        logger.error(
            "embedded log retention deleted %d records group %s had not consumed: %s[%d] offsets %d-%d",
            loss.records,
            loss.group,
            topic,
            partition,
            loss.first,
            loss.end - 1,
            extra={"group": loss.group, "topic": topic, "partition": partition},
        )
        metrics = self._metrics if self._metrics is not None else default_metrics()
        metrics.retention_lost(loss.group, topic, loss.records)


def _write_probe(directory: Path) -> None:
    """Create, write and sync a new file in `directory`, then remove it (blocking; OSError when it cannot)."""
    make_dirs(directory)
    path = directory / PROBE_NAME
    path.unlink(missing_ok=True)  # a new file each time: rewriting an old one's block proves nothing on a full disk
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, b"\n")
        os.fdatasync(fd)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
