"""Reading the embedded log's partitions by offset, as a Kafka consumer does (blocking: call from a thread).

A reader keeps its segment open and its byte position, so reading on costs one `pread`;
the index is used only to seek. A reader never passes a partition's `limit` (in the writing
process, the end of what is synced), and one whose offset retention has deleted goes on
from the oldest record left, as Kafka's `auto.offset.reset = earliest` does; one past the end
(a group's commit above a tail that was cut) goes back to the end, as an out-of-range reset
does. A reader that meets damaged bytes reports them (`damage.py`) and reads on from the next
good frame: only the damaged frames are lost.
"""

from __future__ import annotations

import bisect
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from clickbus.log.damage import Damage, next_good, report
from clickbus.log.port import Entry, TopicPartition
from clickbus.log.segment import (
    bases,
    frames_at,
    load_index,
    partition_dir,
    partitions,
    scan,
    seek_position,
)
from clickbus.log.spool_format import RECORD, decode_record

logger = logging.getLogger(__name__)

END = 1 << 62


class PartitionReader:
    """Reads one partition from `position` on."""

    def __init__(self, root: Path, topic: str, partition: int, position: int) -> None:
        self.directory = partition_dir(root, topic, partition)
        self.topic = topic
        self.partition = partition
        self.position = position
        self._fd: int | None = None
        self._base = 0
        self._at = 0  # byte position of the frame holding `position` (or one before it)
        self._checked_end = False
        self._hopeless: tuple[int, int] | None = None  # (position, file size) past which no good frame was found

    def read(self, max_records: int, limit: int | None = None) -> list[Entry]:
        """Up to `max_records` records from the position on, below `limit`."""
        out: list[Entry] = []
        stop = END if limit is None else limit
        while len(out) < max_records and self.position < stop:
            if self._fd is None and not self._locate():
                break
            assert self._fd is not None
            frames, _ = frames_at(self._fd, self._at)
            if not frames:
                if self._skip_damage() or self._next_segment():
                    continue
                break
            start = self._at
            for frame in frames:
                if len(out) >= max_records or frame.seq >= stop:
                    return out
                if frame.kind == RECORD and frame.seq >= self.position:
                    out.append(self._entry(frame.seq, frame.payload))
                    self.position = frame.seq + 1
                self._at = start + frame.end
        return out

    def _entry(self, offset: int, payload: bytes) -> Entry:
        record = decode_record(offset, payload)
        return Entry(self.topic, self.partition, offset, record.key, record.value, record.headers, record.timestamp_ms)

    def _locate(self) -> bool:
        """Open the segment holding the position, seeking with its index."""
        found = bases(self.directory)
        if not found:
            return False
        if self.position < found[0]:
            self.position = found[0]  # retention deleted what this reader had not read (reported by the writer)
        if not self._checked_end:
            self._checked_end = True
            self._reset_past_end()
        base = found[bisect.bisect_right(found, self.position) - 1]
        try:
            fd = os.open(self.directory / f"{base:020d}.log", os.O_RDONLY)
        except FileNotFoundError:  # deleted by retention just now: look again
            return self._locate()
        self._fd, self._base, self._hopeless = fd, base, None
        _, self._at = seek_position(fd, load_index(self.directory, base), base, self.position)
        return True

    def _reset_past_end(self) -> None:
        """A position (a group's commit) past the partition's end goes back to the end, as Kafka's reset does."""
        end = log_end(self.directory.parent, self.topic, self.partition)
        if self.position > end:
            logger.warning(
                "embedded log %s: position %d is past the end %d (the tail was cut): reading from %d;"
                " the writer gives no offset below %d again",
                self.directory,
                self.position,
                end,
                end,
                self.position,
                extra={"topic": self.topic, "partition": self.partition},
            )
            self.position = end

    def _skip_damage(self) -> bool:
        """At bytes that hold no good frame: jump to the next good frame past them, if there is one yet."""
        assert self._fd is not None
        size = os.fstat(self._fd).st_size
        if self._at >= size or self._hopeless == (self._at, size):
            return False
        found = next_good(self._fd, self._at - 1, self.position)
        if found is None:  # a torn tail, or a frame still being written: looked at again when the file grows
            self._hopeless = (self._at, size)
            return False
        resume, frame = found
        report(
            self.directory,
            self.topic,
            self.partition,
            Damage(self._at, resume, self.position, frame.seq),
            segment=self._base,
        )
        self._at = resume
        self.position = max(self.position, frame.seq)
        return True

    def _next_segment(self) -> bool:
        """At the end of a segment: move to the next one if the writer has rolled over."""
        later = [b for b in bases(self.directory) if b > self._base]
        if not later:
            return False
        if self.position < later[0]:
            assert self._fd is not None
            if self._at < os.fstat(self._fd).st_size:  # damaged to its end: nothing good followed in it
                damage = Damage(self._at, self._at, self.position, later[0])
                report(self.directory, self.topic, self.partition, damage, segment=self._base)
            else:
                logger.error(
                    "embedded log %s: offsets %d-%d unreadable, skipped", self.directory, self.position, later[0] - 1
                )
            self.position = later[0]
        self.close()
        return True

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def log_start(root: Path, topic: str, partition: int) -> int:
    """The oldest offset still in the partition."""
    found = bases(partition_dir(root, topic, partition))
    return found[0] if found else 0


def log_end(root: Path, topic: str, partition: int) -> int:
    """The offset the next record appended to the partition will get (as far as the files show)."""
    directory = partition_dir(root, topic, partition)
    found = bases(directory)
    if not found:
        return 0
    base = found[-1]
    try:
        fd = os.open(directory / f"{base:020d}.log", os.O_RDONLY)
    except FileNotFoundError:
        return base
    try:
        return scan(fd, base, seek_position(fd, load_index(directory, base), base, END)).next_offset
    finally:
        os.close(fd)


class ReaderSet:
    """Readers over every partition of some topics, read round-robin."""

    def __init__(self, root: Path, topics: Sequence[str]) -> None:
        self.root = root
        self.topics = tuple(topics)
        self.readers: dict[TopicPartition, PartitionReader] = {}
        self._turn = 0

    def unknown(self) -> list[TopicPartition]:
        """Partitions on disk that have no reader yet."""
        found = [(t, p) for t in self.topics for p in partitions(self.root, t)]
        return [tp for tp in found if tp not in self.readers]

    def add(self, tp: TopicPartition, position: int) -> None:
        self.readers[tp] = PartitionReader(self.root, tp[0], tp[1], position)

    def read(self, max_records: int, limits: Mapping[TopicPartition, int]) -> list[Entry]:
        readers = list(self.readers.values())
        if not readers:
            return []
        self._turn = (self._turn + 1) % len(readers)
        out: list[Entry] = []
        for reader in readers[self._turn :] + readers[: self._turn]:
            out += reader.read(max_records - len(out), limits.get((reader.topic, reader.partition)))
            if len(out) >= max_records:
                break
        return out

    def positions(self) -> dict[TopicPartition, int]:
        return {tp: reader.position for tp, reader in self.readers.items()}

    def close(self) -> None:
        for reader in self.readers.values():
            reader.close()


def read_topic_now(root: Path, topic: str) -> list[Entry]:
    """Every record of `topic` on disk now, partition by partition (blocking: for tools and tests)."""
    readers = ReaderSet(root, [topic])
    try:
        for tp in readers.unknown():
            readers.add(tp, 0)
        out: list[Entry] = []
        while batch := readers.read(10_000, {}):
            out += batch
        return out
    finally:
        readers.close()
