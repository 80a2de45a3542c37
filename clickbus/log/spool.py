"""The disk spool: where the Kafka adapter keeps records while the broker cannot take them.

The spool is a directory of append-only segment files, each named for the
sequence number of its first record. Every frame carries its length and a
CRC32, so a tail torn by a crash (SIGKILL, power loss) is detected when the
spool is opened and cut off; only frames that were fsync'd were ever
acknowledged, and those are whole.

Three kinds of frame share the files:
- RECORD (seq, topic, key, value, headers, timestamp): a record to ship;
- DONE (seq): that one record reached Kafka by another path (the producer
  delivered it after its append had already fallen back to the spool);
- SHIPPED (seq): every record up to and including seq reached Kafka.

Writes are group-committed: every frame queued while the previous batch was
being fsync'd goes into the next batch, so a burst of clicks shares one fsync
and each caller is answered when its own frame is on disk. When the disk is
full, or the spool has reached its size limit, `put` raises `LogUnavailable`:
the record was not made durable and must not be acknowledged.

A spool has one writer. The configured directory names a family of spools: spool 0
is the directory itself (where every spool lived before there were several, so an
old one is shipped after an upgrade), spool n its sibling `<name>-n`. A process holds
the writer lock (`locks.py`) of one of them, preferring its worker index, for as long
as the spool is open. At open it also takes over every spool of the family that no
process holds and that still has records (one left by a worker that is gone): their
records are copied into its own spool, fsync'd, and only then marked shipped there.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from clickbus.errors import LogUnavailable
from clickbus.log.embedded import worker_partition
from clickbus.log.locks import lock_first_free, try_lock
from clickbus.log.spool_family import SUFFIX, family, family_member, has_segments
from clickbus.log.spool_format import (
    DONE,
    RECORD,
    SHIPPED,
    SpooledRecord,
    decode_record,
    encode_frame,
    encode_record,
    read_frames,
)

logger = logging.getLogger(__name__)

READ_CHUNK = 4 * 1024 * 1024
TAKE_OVER_WINDOW = 2000  # records copied from an orphaned spool per fsync


@dataclass(frozen=True, slots=True)
class Cursor:
    """A read position: a segment (by its first seq) and a byte offset in it."""

    segment: int
    offset: int


def _note_record(found: _Recovered, seq: int) -> None:
    """Records are written in seq order: a jump means the seqs between were never written."""
    if found.last_record:
        found.missing.update(range(found.last_record + 1, seq))
    else:
        found.first_record = seq
    found.last_record = seq


def _segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}{SUFFIX}"


@dataclass(slots=True)
class _Recovered:
    """What a scan of the spool directory found."""

    segments: list[int] = field(default_factory=list)
    sizes: dict[int, int] = field(default_factory=dict)
    first_record: int = 0
    last_record: int = 0
    missing: set[int] = field(default_factory=set)  # seqs between records that hold none (failed writes)
    done: set[int] = field(default_factory=set)
    shipped: int = 0
    torn: int = 0


@dataclass(slots=True)
class _Write:
    frame: bytes
    future: asyncio.Future[None] = field(repr=False)
    seq: int | None = None  # the record's seq, None for markers


class Spool:
    """A durable FIFO of records on local disk, shipped to Kafka when it returns."""

    def __init__(
        self, directory: Path, *, max_bytes: int, segment_bytes: int = 64 * 1024 * 1024, preferred: int | None = None
    ) -> None:
        self.root = directory  # the configured directory: the family's spool 0
        self.directory = directory  # the spool this process holds, once open
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.preferred = worker_partition() if preferred is None else preferred
        self.taken_over = 0  # records copied at open from spools no process held
        self._lock_fd: int | None = None
        self._segments: list[int] = []  # first seq of each segment file, oldest first
        self._sizes: dict[int, int] = {}  # durable bytes per segment
        self._done: set[int] = set()  # records above `shipped` that reached Kafka
        self._gaps: set[int] = set()  # seqs above `shipped` that hold no record (their write failed)
        self._shipped = 0
        self._next_seq = 1
        self._queue: list[_Write] = []
        self._flusher: asyncio.Task[None] | None = None
        self._broken: str | None = None
        self._bytes = 0  # on disk and queued
        self.torn_bytes = 0

    # -- opening ---------------------------------------------------------------------------

    async def open(self) -> None:
        """Hold a spool of the family, recover it, and take over the family's spools that nobody holds."""
        held = await asyncio.to_thread(lock_first_free, functools.partial(family_member, self.root), self.preferred)
        if held is None:
            raise LogUnavailable(f"every spool of {self.root} from {self.preferred} on has a writer")
        self.directory, self._lock_fd = held.directory, held.fd
        try:
            await self._load()
            await self._take_over_orphans()
        except BaseException:
            self._release()
            raise

    async def _load(self) -> None:
        """Scan the held directory, cut torn tails, and count what is left to ship."""
        found = await asyncio.to_thread(self._recover)
        self._segments, self._sizes = found.segments, found.sizes
        self._bytes = sum(found.sizes.values())
        # records below the oldest one on disk were shipped before their segment was deleted
        self._shipped = max(found.shipped, found.first_record - 1)
        self._next_seq = max(found.last_record, self._shipped) + 1
        self._done = {s for s in found.done if self._shipped < s < self._next_seq}
        self._gaps = {s for s in found.missing if s > self._shipped} - self._done
        self.torn_bytes = found.torn
        if found.torn:
            logger.warning("spool: cut a torn tail of %d bytes (an append interrupted by a crash)", found.torn)

    # -- taking over spools nobody holds ----------------------------------------------------

    async def _take_over_orphans(self) -> None:
        for directory in await asyncio.to_thread(family, self.root):
            if directory != self.directory and await asyncio.to_thread(has_segments, directory):
                await self._take_over(directory)

    async def _take_over(self, directory: Path) -> None:
        """Ship the records of the spool in `directory` from this one, unless a live process holds it."""
        fd = await asyncio.to_thread(try_lock, directory)
        if fd is None:
            return  # its writer is alive and ships it
        orphan = Spool(directory, max_bytes=self.max_bytes, preferred=0)
        orphan.directory, orphan._lock_fd = directory, fd
        try:
            await orphan._load()
            if orphan.pending:
                await self._copy(orphan)
            await orphan.reset()  # also what a crash in an earlier reset left: segments of shipped records only
        except (OSError, LogUnavailable) as exc:
            logger.error("spool: could not take over %s (%s); the next start tries again", directory, exc)
        finally:
            await orphan.close()

    async def _copy(self, orphan: Spool) -> None:
        """Copy the orphan's records here and fsync them; only then mark them shipped there."""
        if self._broken is not None:
            raise LogUnavailable(f"spool unusable: {self._broken}")
        pending = orphan.pending
        logger.warning(
            "spool: %s holds %d records and no process holds it (its writer is gone): shipping them from %s",
            orphan.directory,
            pending,
            self.directory,
        )
        cursor, copied = orphan.start_cursor(), 0
        while True:
            batch, cursor = await orphan.read(cursor, TAKE_OVER_WINDOW)
            if not batch:
                break
            written = await asyncio.gather(*(self._enqueue_copy(r) for r in batch), return_exceptions=True)
            if failed := next((w for w in written if isinstance(w, BaseException)), None):
                raise failed  # what was copied stays here too: shipped twice, never lost
            copied += len(batch)
        if copied < pending:
            logger.error("spool: %d of %d records in %s were unreadable", pending - copied, pending, orphan.directory)
        await orphan.mark_shipped(orphan._next_seq - 1)
        self.taken_over += copied

    def _recover(self) -> _Recovered:
        found = _Recovered()
        for path in sorted(self.directory.glob(f"*{SUFFIX}")):
            if not path.name.removesuffix(SUFFIX).isdigit():
                logger.warning("spool: ignoring %s (not a segment)", path)
                continue
            first = int(path.name.removesuffix(SUFFIX))
            raw = path.read_bytes()
            end = 0
            for frame in read_frames(raw):
                end = frame.end
                if frame.kind == RECORD:
                    _note_record(found, frame.seq)
                elif frame.kind == DONE:
                    found.done.add(frame.seq)
                elif frame.kind == SHIPPED:
                    found.shipped = max(found.shipped, frame.seq)
            if end < len(raw):
                found.torn += len(raw) - end
                with open(path, "r+b") as f:
                    f.truncate(end)
                    os.fsync(f.fileno())
            found.segments.append(first)
            found.sizes[first] = end
        return found

    # -- state -----------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Records put and not yet known to be in Kafka (including those still being written)."""
        return self._next_seq - 1 - self._shipped - len(self._done) - len(self._gaps)

    @property
    def broken(self) -> str | None:
        """Why the spool refuses writes, if it does."""
        return self._broken

    @property
    def size(self) -> int:
        """Bytes on disk and queued for it."""
        return self._bytes

    def start_cursor(self) -> Cursor:
        # with no segment yet, records queued for the flush get one named for their seq: all above `_shipped`
        return Cursor(self._segments[0] if self._segments else self._shipped + 1, 0)

    def is_done(self, seq: int) -> bool:
        return seq <= self._shipped or seq in self._done

    # -- writing ---------------------------------------------------------------------------

    async def put(self, topic: str, key: bytes, value: bytes, headers: tuple[tuple[str, bytes], ...], ts: int) -> int:
        """Append one record and return its seq once it is fsync'd; raise `LogUnavailable` if it cannot be."""
        seq, written = self.enqueue(topic, key, value, headers, ts)
        await written
        return seq

    def enqueue(
        self, topic: str, key: bytes, value: bytes, headers: tuple[tuple[str, bytes], ...], ts: int
    ) -> tuple[int, asyncio.Future[None]]:
        """Give one record its seq now (seqs follow call order) and a future resolved once it is fsync'd."""
        if self._broken is not None:
            raise LogUnavailable(f"spool unusable: {self._broken}")
        seq = self._next_seq
        frame = encode_record(SpooledRecord(seq, topic, key, value, headers, ts))
        if self._bytes + len(frame) > self.max_bytes:
            raise LogUnavailable(f"spool full ({self.max_bytes} bytes) and Kafka unavailable")
        self._next_seq += 1
        return seq, self._enqueue(frame, seq)

    def _enqueue_copy(self, record: SpooledRecord) -> asyncio.Future[None]:
        """Queue a record already acknowledged elsewhere: the size limit does not refuse it, it would strand it."""
        seq, self._next_seq = self._next_seq, self._next_seq + 1
        rec = SpooledRecord(seq, record.topic, record.key, record.value, record.headers, record.timestamp_ms)
        return self._enqueue(encode_record(rec), seq)

    async def mark_done(self, seqs: list[int]) -> None:
        """Record that these records reached Kafka by the producer's own retry."""
        fresh = [s for s in seqs if not self.is_done(s) and s not in self._gaps]
        if not fresh:
            return
        self._done.update(fresh)
        with contextlib.suppress(LogUnavailable):  # losing a marker costs a duplicate, never a record
            await self._enqueue(b"".join(encode_frame(DONE, s) for s in fresh))

    async def mark_shipped(self, seq: int) -> None:
        """Record that every record up to `seq` reached Kafka; drop segments no longer needed."""
        if seq <= self._shipped:
            return
        self._done = {s for s in self._done if s > seq}
        self._gaps = {s for s in self._gaps if s > seq}
        self._shipped = seq
        with contextlib.suppress(LogUnavailable):
            await self._enqueue(encode_frame(SHIPPED, seq))
        await self._drop_shipped_segments()

    async def reset(self) -> bool:
        """Delete every segment if nothing is pending or being written; say whether it did."""
        while self._flusher is not None and not self._flusher.done():
            await self._flusher
        if self.pending or self._queue:
            return False
        segments, self._segments, self._sizes = self._segments, [], {}
        self._shipped = self._next_seq - 1
        self._done.clear()
        self._gaps.clear()
        self._bytes = 0
        await asyncio.to_thread(self._unlink, segments)
        return True

    def _unlink(self, segments: list[int]) -> None:
        for first in segments:  # oldest first: a crash midway leaves the newest, which holds the SHIPPED marker
            with contextlib.suppress(FileNotFoundError):
                (self.directory / _segment_name(first)).unlink()

    async def _drop_shipped_segments(self) -> None:
        segments = list(self._segments)  # the flush thread may append meanwhile: change the list in place only
        drop = [s for s, nxt in itertools.pairwise(segments) if nxt - 1 <= self._shipped]
        if not drop:
            return
        for first in drop:
            self._segments.remove(first)
            self._bytes -= self._sizes.pop(first, 0)
        await asyncio.to_thread(self._unlink, drop)

    def _enqueue(self, frame: bytes, seq: int | None = None) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append(_Write(frame, future, seq))
        self._bytes += len(frame)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_loop(), name="clickbus-spool-flush")
        return future

    async def close(self) -> None:
        """Wait for queued writes to reach the disk, then let another process hold this spool."""
        if self._flusher is not None:
            await self._flusher
        self._release()

    def _release(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)

    async def _flush_loop(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            error: BaseException | None = None
            first = min((w.seq for w in batch if w.seq is not None), default=self._next_seq)
            try:
                await asyncio.to_thread(self._append, b"".join(w.frame for w in batch), first)
            except OSError as exc:
                error = LogUnavailable(f"spool write failed: {exc.strerror or exc}")
                self._bytes -= sum(len(w.frame) for w in batch)
                self._gaps.update(w.seq for w in batch if w.seq is not None)
                logger.error("%s (%d records refused)", error, sum(w.seq is not None for w in batch))
            for write in batch:
                if write.future.done():
                    continue
                if error is None:
                    write.future.set_result(None)
                else:
                    write.future.set_exception(error)

    def _append(self, data: bytes, first_seq: int) -> None:
        """Write and fsync `data` at the end of the active segment (runs in a worker thread)."""
        if not self._segments or self._sizes[self._segments[-1]] >= self.segment_bytes:
            self._new_segment(first_seq)
        first = self._segments[-1]
        path = self.directory / _segment_name(first)
        size = self._sizes[first]
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            try:
                os.lseek(fd, size, os.SEEK_SET)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            except OSError:
                self._undo(fd, size)
                raise
        finally:
            os.close(fd)
        self._sizes[first] = size + len(data)

    def _undo(self, fd: int, size: int) -> None:
        """Cut a failed write off so the next one starts on a frame boundary."""
        try:
            os.ftruncate(fd, size)
            os.fsync(fd)
        except OSError as exc:
            self._broken = f"cannot cut a failed write: {exc.strerror or exc}"

    def _new_segment(self, first_seq: int) -> None:
        """Start a segment named for the lowest seq it will hold; names keep increasing."""
        self.directory.mkdir(parents=True, exist_ok=True)
        first = max(first_seq, self._segments[-1] + 1) if self._segments else first_seq
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.close(os.open(self.directory / _segment_name(first), os.O_WRONLY | os.O_CREAT, 0o600))
            os.fsync(fd)  # the new file's name is durable before any record in it is acknowledged
        finally:
            os.close(fd)
        self._sizes[first] = 0
        self._segments.append(first)

    # -- reading ---------------------------------------------------------------------------

    async def read(self, cursor: Cursor, max_records: int) -> tuple[list[SpooledRecord], Cursor]:
        """Up to `max_records` durable, unshipped records at or after `cursor`, and the cursor after them."""
        return await asyncio.to_thread(self._read, cursor, max_records)

    def _read(self, cursor: Cursor, max_records: int) -> tuple[list[SpooledRecord], Cursor]:
        out: list[SpooledRecord] = []
        for first in [s for s in self._segments if s >= cursor.segment]:
            offset = cursor.offset if first == cursor.segment else 0
            cursor = Cursor(first, self._read_segment(first, offset, max_records, out))
            if len(out) >= max_records:
                break
        return out, cursor

    def _read_segment(self, first: int, offset: int, max_records: int, out: list[SpooledRecord]) -> int:
        """Add the segment's unshipped records from `offset` to `out`; return the offset after the last frame read."""
        size, chunk = self._sizes.get(first, 0), READ_CHUNK
        with open(self.directory / _segment_name(first), "rb") as f:
            while offset < size and len(out) < max_records:
                f.seek(offset)
                raw, start = f.read(min(chunk, size - offset)), offset
                for frame in read_frames(raw):
                    if frame.kind == RECORD and not self.is_done(frame.seq):
                        out.append(decode_record(frame.seq, frame.payload))
                    offset = start + frame.end
                    if len(out) >= max_records:
                        break
                if offset == start:  # a frame larger than the chunk, or damage
                    if len(raw) == size - start:
                        logger.error("spool: unreadable frame at %d in segment %d", start, first)
                        break
                    chunk *= 2
        return offset
