"""Segment files of the embedded log: where a partition's records lie and how to find them by offset.

A partition is a directory `<topic>-<n>` of segments. A segment is a file named for the
offset of its first record (`00000000000000000042.log`) holding CRC-framed records (the
spool's framing, `spool_format`; a frame's seq is the record's offset) and a sparse
index beside it (`.index`: pairs of offset-from-base and byte position, one every
`INDEX_EVERY` bytes or so). The index is a hint: it is never fsync'd, and every entry is
checked against the frame it points at before it is trusted. `high-water`, written when a
writer stops cleanly, is the next offset it would have given: a partition whose tail is later
cut short never gives those offsets again.
"""

from __future__ import annotations

import bisect
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from clickbus.log.damage import Damage, next_good
from clickbus.log.locks import fsync_dir
from clickbus.log.spool_format import RECORD, Frame, read_frames
from clickbus.private_files import PRIVATE_FILE

LOG_SUFFIX = ".log"
HIGH_WATER = "high-water"
INDEX_SUFFIX = ".index"
INDEX_EVERY = 4096
READ_BYTES = 256 * 1024
_ENTRY = struct.Struct(">II")  # offset - base, byte position
_FRAME_HEAD = struct.Struct(">I")  # a frame begins with its payload length
FRAME_OVERHEAD = 17


def partition_dir(root: Path, topic: str, partition: int) -> Path:
    return root / f"{topic}-{partition}"


def partitions(root: Path, topic: str) -> list[int]:
    """The partitions of `topic` that exist under `root`, in order."""
    found = []
    prefix = f"{topic}-"
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    for name in names:
        if name.startswith(prefix) and name[len(prefix) :].isdigit():
            found.append(int(name[len(prefix) :]))
    return sorted(found)


def segment_path(directory: Path, base: int, suffix: str = LOG_SUFFIX) -> Path:
    return directory / f"{base:020d}{suffix}"


def bases(directory: Path) -> list[int]:
    """The base offsets of the partition's segments, oldest first."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return sorted(int(n[: -len(LOG_SUFFIX)]) for n in names if n.endswith(LOG_SUFFIX) and n[:-4].isdigit())


def read_high_water(directory: Path) -> int:
    """The next offset the partition had when its writer last stopped cleanly (0 when unknown)."""
    try:
        text = (directory / HIGH_WATER).read_text(encoding="ascii").strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return 0
    return int(text) if text.isdigit() else 0


def write_high_water(directory: Path, offset: int) -> None:
    """Record durably that the partition's offsets below `offset` were given out (blocking)."""
    tmp = directory / f"{HIGH_WATER}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    try:
        os.write(fd, b"%d\n" % offset)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, directory / HIGH_WATER)
    fsync_dir(directory)


def pack_index(entries: list[tuple[int, int]], base: int) -> bytes:
    return b"".join(_ENTRY.pack(offset - base, position) for offset, position in entries)


def write_index(directory: Path, base: int, entries: list[tuple[int, int]]) -> None:
    """Replace a segment's index (not synced: it is a hint)."""
    fd = os.open(segment_path(directory, base, INDEX_SUFFIX), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    try:
        os.write(fd, pack_index(entries, base))
    finally:
        os.close(fd)


def load_index(directory: Path, base: int) -> list[tuple[int, int]]:
    """(offset, position) pairs of a segment's index; empty when it is missing."""
    try:
        raw = segment_path(directory, base, INDEX_SUFFIX).read_bytes()
    except FileNotFoundError:
        return []
    usable = len(raw) - len(raw) % _ENTRY.size
    return [(base + rel, pos) for rel, pos in _ENTRY.iter_unpack(raw[:usable])]


@dataclass(frozen=True, slots=True)
class Scan:
    """What a segment holds up to its tail: its end, the next offset, a fresh index, and the damage skipped."""

    end: int
    next_offset: int
    index: list[tuple[int, int]]
    damaged: tuple[Damage, ...] = ()


def frames_at(fd: int, position: int, size: int = READ_BYTES) -> tuple[list[Frame], int]:
    """Intact frames from `position` (at least one if a whole one is there) and where the next one starts."""
    raw = os.pread(fd, size, position)
    if len(raw) >= _FRAME_HEAD.size:
        (length,) = _FRAME_HEAD.unpack_from(raw)
        if length + FRAME_OVERHEAD > len(raw) == size:  # one frame bigger than a read: read all of it
            raw = os.pread(fd, length + FRAME_OVERHEAD, position)
    frames = list(read_frames(raw))
    return frames, position + (frames[-1].end if frames else 0)


def scan(fd: int, base: int, start: tuple[int, int] | None = None) -> Scan:
    """Walk a segment's frames from `start` (offset, position) to its tail (the first bad frame no good one follows).

    A damaged stretch that good frames follow is skipped and listed: they hold answered records.
    """
    offset, at = start if start is not None else (base, 0)
    index: list[tuple[int, int]] = []
    damaged: list[Damage] = []
    last_indexed = -INDEX_EVERY
    while True:
        read_at = at
        frames, _ = frames_at(fd, read_at)
        for frame in frames:
            if frame.kind != RECORD or frame.seq != offset:
                break
            if at - last_indexed >= INDEX_EVERY:
                index.append((offset, at))
                last_indexed = at
            offset += 1
            at = read_at + frame.end
        else:
            if frames:
                continue
        found = next_good(fd, at - 1, offset)  # from `at` itself: its frame may be whole but of a later offset
        if found is None:
            return Scan(at, offset, index, tuple(damaged))
        resume, frame = found
        damaged.append(Damage(at, resume, offset, frame.seq))
        at, offset = resume, frame.seq


def seek_position(fd: int, index: list[tuple[int, int]], base: int, offset: int) -> tuple[int, int]:
    """The (offset, position) of the last checked index entry at or before `offset`, else the segment start."""
    i = bisect.bisect_right(index, (offset, 1 << 62)) - 1
    while i >= 0:
        entry_offset, position = index[i]
        if _header_seq(fd, position) == entry_offset:  # a stale entry (a truncated tail) points elsewhere
            return entry_offset, position
        i -= 1
    return base, 0


def _header_seq(fd: int, position: int) -> int | None:
    head = os.pread(fd, FRAME_OVERHEAD, position)
    if len(head) < FRAME_OVERHEAD:
        return None
    return int.from_bytes(head[8:16], "big")
