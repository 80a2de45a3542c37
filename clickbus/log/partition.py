"""One partition's writer: group commit on the event loop, `fdatasync` on a helper thread.

Appends made while a group is being synced gather; when the sync is done the loop
encodes every gathered record into one buffer and writes it with one `write` (to the page
cache: microseconds), then hands the file to the helper thread, which only calls
`fdatasync` (the GIL is released meanwhile) and wakes the loop. Each append is answered
when its group is synced. A partition has one writer: an exclusive `flock` on its
`writer.lock` (`locks.py`) is held for as long as it is open, so two processes can never share one.

Opening a partition checks every frame of its active segment, and never gives an offset twice:
the first offset it gives is the highest of the last good frame + 1, every group's committed
offset and the high-water mark of the last clean stop (a tail cut after it was consumed would
otherwise hand its offsets to new records, which a group past them never reads).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from clickbus.errors import LogUnavailable
from clickbus.log.damage import report
from clickbus.log.locks import lock_first_free
from clickbus.log.port import Headers
from clickbus.log.segment import (
    INDEX_EVERY,
    INDEX_SUFFIX,
    bases,
    pack_index,
    partition_dir,
    read_high_water,
    scan,
    segment_path,
    write_high_water,
    write_index,
)
from clickbus.log.spool_format import headers_field, record_frame, topic_field
from clickbus.private_files import PRIVATE_FILE

logger = logging.getLogger(__name__)

_APPEND = os.O_WRONLY | os.O_APPEND | os.O_CREAT


@dataclass(slots=True)
class _Pending:
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int
    future: asyncio.Future[None] = field(repr=False)


@dataclass(slots=True)
class _Group:
    """One write, waiting for its fdatasync: where it starts, so that a failed sync can be cut off."""

    records: list[_Pending]
    first: int
    start: int
    fd: int
    dir_fd: int | None  # the first group of a new segment also syncs the directory that names the file


class _Syncer(threading.Thread):
    """Calls fdatasync for one group at a time and hands the outcome back to the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, done: Callable[[_Group, OSError | None], None]) -> None:
        super().__init__(name="clickbus-log-sync", daemon=True)
        self.loop = loop
        self.done = done
        self.jobs: queue.SimpleQueue[_Group | None] = queue.SimpleQueue()

    def run(self) -> None:
        while (group := self.jobs.get()) is not None:
            error: OSError | None = None
            try:
                if group.dir_fd is not None:
                    os.fsync(group.dir_fd)
                os.fdatasync(group.fd)
            except OSError as exc:
                error = exc
            try:
                self.loop.call_soon_threadsafe(self.done, group, error)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                return


@dataclass(frozen=True, slots=True)
class Opened:
    """A partition locked for writing and recovered: its files, next offset and index."""

    directory: Path
    partition: int
    lock_fd: int
    dir_fd: int
    base: int
    size: int
    next_offset: int
    index: list[tuple[int, int]]


def open_partition(root: Path, topic: str, preferred: int, committed: Callable[[int], int] = lambda _: 0) -> Opened:
    """Lock the first free partition of `topic` from `preferred` on and recover its active segment (blocking).

    `committed(partition)` is the highest offset any consumer group committed there: no offset below it is given again.
    """
    held = lock_first_free(lambda partition: partition_dir(root, topic, partition), preferred)
    if held is None:
        raise LogUnavailable(f"embedded log: every partition of {topic} from {preferred} on has a writer")
    try:
        recovered = _recover(held.directory, topic, held.index, held.fd)
        return _above(recovered, max(committed(held.index), read_high_water(held.directory)))
    except BaseException:
        os.close(held.fd)
        raise


def _recover(directory: Path, topic: str, partition: int, lock_fd: int) -> Opened:
    """Check every frame of the active segment, cut a torn tail (a crash mid-write) and rebuild its index."""
    found = bases(directory)
    base = found[-1] if found else 0
    path = segment_path(directory, base)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
    try:
        # From the first frame, not the last index entry: damage before it would stop readers there for good.
        checked = scan(fd, base)
        size = os.fstat(fd).st_size
        if checked.end < size:
            logger.warning(
                "embedded log %s: cut a torn tail of %d bytes at offset %d",
                path,
                size - checked.end,
                checked.next_offset,
            )
            os.ftruncate(fd, checked.end)
            os.fsync(fd)
    finally:
        os.close(fd)
    for damage in checked.damaged:
        report(directory, topic, partition, damage, segment=base)
    write_index(directory, base, checked.index)
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    if not found:
        os.fsync(dir_fd)
    return Opened(directory, partition, lock_fd, dir_fd, base, checked.end, checked.next_offset, checked.index)


def _above(opened: Opened, floor: int) -> Opened:
    """`opened`, or a new segment at `floor` when offsets up to it were given before and are gone (a cut tail)."""
    if floor <= opened.next_offset:
        return opened
    logger.error(
        "embedded log %s: offsets %d-%d were given before and are gone (a cut tail or a lost segment):"
        " the next record gets offset %d, none is given twice",
        opened.directory,
        opened.next_offset,
        floor - 1,
        floor,
    )
    if opened.size == 0:  # an empty segment would only make readers report a gap: the new one takes its place
        for suffix in (INDEX_SUFFIX, ".log"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(segment_path(opened.directory, opened.base, suffix))
    fd = os.open(segment_path(opened.directory, floor), os.O_WRONLY | os.O_CREAT, PRIVATE_FILE)
    os.close(fd)
    write_index(opened.directory, floor, [])
    os.fsync(opened.dir_fd)
    return replace(opened, base=floor, size=0, next_offset=floor, index=[])


class PartitionWriter:
    """Appends to one partition; each append's future is answered once its group is synced."""

    def __init__(
        self,
        topic: str,
        opened: Opened,
        *,
        segment_bytes: int,
        max_batch: int,
        on_synced: Callable[[], None],
        on_roll: Callable[[], None],
    ) -> None:
        self.topic = topic
        self.partition = opened.partition
        self.directory = opened.directory
        self.segment_bytes = segment_bytes
        self.max_batch = max_batch
        self.on_synced = on_synced
        self.on_roll = on_roll
        self.loop = asyncio.get_running_loop()
        self.error: OSError | None = None
        self.synced_end = opened.next_offset
        self._opened = opened
        self._base = opened.base
        self._size = opened.size
        self._next = opened.next_offset
        self._index = list(opened.index)
        self._last_indexed = opened.index[-1][1] if opened.index else -INDEX_EVERY
        self._fd = os.open(segment_path(self.directory, self._base), _APPEND, PRIVATE_FILE)
        self._index_fd = os.open(segment_path(self.directory, self._base, INDEX_SUFFIX), _APPEND, PRIVATE_FILE)
        self._new_segment = False
        self._topic_field = topic_field(topic)
        self._headers: Headers = ()
        self._headers_field = headers_field(())
        self._pending: list[_Pending] = []
        self._inflight: _Group | None = None
        self._scheduled = False
        self._closed = False
        self._syncer = _Syncer(self.loop, self._synced)
        self._syncer.start()

    @property
    def active_base(self) -> int:
        """The base offset of the segment being written (never deleted by retention)."""
        return self._base

    def append(
        self, key: bytes, value: bytes, headers: Headers, timestamp_ms: int | None = None
    ) -> asyncio.Future[None]:
        if self._closed:
            raise LogUnavailable("embedded log is not running")
        future = self.loop.create_future()
        ts = time.time_ns() // 1_000_000 if timestamp_ms is None else timestamp_ms
        self._pending.append(_Pending(key, value, tuple(headers), ts, future))
        if self._inflight is None and not self._scheduled:
            self._scheduled = True
            self.loop.call_soon(self._flush)  # what else this loop turn appends joins the same group
        return future

    def _flush(self) -> None:
        self._scheduled = False
        if self._inflight is not None or not self._pending:
            return
        records, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
        try:
            if self._size >= self.segment_bytes:
                self._roll()
            group = self._write(records)
        except OSError as exc:
            self._fail(records, exc)
            self._flush_later()
            return
        self._inflight = group
        self._syncer.jobs.put(group)

    def _flush_later(self) -> None:
        if self._pending and not self._scheduled:
            self._scheduled = True
            self.loop.call_soon(self._flush)

    def _write(self, records: list[_Pending]) -> _Group:
        first, start = self._next, self._size
        topic, headers, encoded = self._topic_field, self._headers, self._headers_field
        frames = []
        for seq, r in enumerate(records, first):
            if r.headers is not headers:  # records of one kind share one headers tuple: encoded once
                headers, encoded = r.headers, headers_field(r.headers)
            frames.append(record_frame(seq, topic, r.key, r.value, encoded, r.timestamp_ms))
        self._headers, self._headers_field = headers, encoded
        buffer = b"".join(frames)
        try:
            _write_all(self._fd, buffer)
        except OSError:
            with contextlib.suppress(OSError):  # a short write (disk full) must not leave half a frame
                os.ftruncate(self._fd, start)
            raise
        self._size += len(buffer)
        self._next += len(records)
        if start - self._last_indexed >= INDEX_EVERY:
            self._add_index(first, start)
        sync_dir, self._new_segment = self._new_segment, False
        return _Group(records, first, start, self._fd, self._opened.dir_fd if sync_dir else None)

    def _add_index(self, offset: int, position: int) -> None:
        self._index.append((offset, position))
        self._last_indexed = position
        with contextlib.suppress(OSError):  # the index is only a hint; readers check it
            os.write(self._index_fd, pack_index([(offset, position)], self._base))

    def _roll(self) -> None:
        """Close the full segment (already synced: no group is in flight) and start the next one."""
        fd = os.open(segment_path(self.directory, self._next), _APPEND, PRIVATE_FILE)
        index_fd = os.open(segment_path(self.directory, self._next, INDEX_SUFFIX), _APPEND | os.O_TRUNC, PRIVATE_FILE)
        os.close(self._fd)
        os.close(self._index_fd)
        self._fd, self._index_fd = fd, index_fd
        self._base, self._size, self._index, self._last_indexed = self._next, 0, [], -INDEX_EVERY
        self._new_segment = True
        self.on_roll()

    def _synced(self, group: _Group, error: OSError | None) -> None:
        self._inflight = None
        if error is None:
            self.synced_end = group.first + len(group.records)
            self.error = None
            for record in group.records:
                if not record.future.done():
                    record.future.set_result(None)
            self.on_synced()
        else:
            self._rewind(group)
            self._fail(group.records, error)
        self._flush()

    def _rewind(self, group: _Group) -> None:
        """Cut off a group whose sync failed: it was never answered, and its offsets must not be reused later."""
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, group.start)
        self._size, self._next = group.start, group.first
        self._new_segment = self._new_segment or group.dir_fd is not None
        self._index = [entry for entry in self._index if entry[1] < group.start]
        self._last_indexed = self._index[-1][1] if self._index else -INDEX_EVERY
        with contextlib.suppress(OSError):
            os.ftruncate(self._index_fd, 0)
            os.write(self._index_fd, pack_index(self._index, self._base))

    def _fail(self, records: list[_Pending], error: OSError) -> None:
        self.error = error
        logger.error("embedded log %s: write failed: %s", self.directory, error)
        for record in records:
            if not record.future.done():
                record.future.set_exception(LogUnavailable(f"embedded log write failed: {error}"))

    async def close(self, timeout: float) -> None:
        """Sync what is queued (within `timeout`), then release the files and the partition's lock."""
        self._closed = True
        waiting = [r.future for r in self._pending]
        if self._inflight is not None:
            waiting += [r.future for r in self._inflight.records]
        if waiting:
            await asyncio.wait(waiting, timeout=timeout)
        self._syncer.jobs.put(None)
        if any(not f.done() for f in waiting):
            logger.error("embedded log %s: appends not synced within %.1fs", self.directory, timeout)
            for record in self._pending:
                if not record.future.done():
                    record.future.set_exception(LogUnavailable("embedded log stopped before the append was durable"))
            return  # the helper thread may still hold the file: leave it open rather than close it under it
        await asyncio.to_thread(self._syncer.join, timeout)
        with contextlib.suppress(OSError):  # only a guard: without it a later cut tail is found from the commits alone
            await asyncio.to_thread(write_high_water, self.directory, self.synced_end)
        for fd in (self._fd, self._index_fd, self._opened.dir_fd, self._opened.lock_fd):
            os.close(fd)


def _write_all(fd: int, buffer: bytes) -> None:
    view = memoryview(buffer)
    while view:
        view = view[os.write(fd, view) :]
