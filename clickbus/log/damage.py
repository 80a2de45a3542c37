"""Damaged frames in the embedded log's segments: finding the next good frame past them, and reporting them.

Every frame carries a CRC and its offset, so past a damaged stretch (a flipped byte, a zeroed
block) the next good frame is the first position where a whole frame checks out and holds the
offset expected or a later one. Only the damaged frames are lost. Each stretch is logged at
error level and counted (`clickbus_log_corrupt_records_total`) once per process, whichever
reader met it first (the recovery of the active segment, the notifier's group, a replay), and
the log's health names it.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from clickbus.log.spool_format import HEAD_SIZE, MAX_PAYLOAD, RECORD, Frame, read_frames
from clickbus.metrics import default_metrics

logger = logging.getLogger(__name__)

CHUNK = 256 * 1024
_SEQ_AT = 8  # a frame header is length, crc, seq (8 bytes), kind
_PREFIX = 6  # the seq's high bytes searched for: a good frame lies at most 2 * 65536 offsets past the damage
_KEPT = 16  # damages remembered for the log's health


@dataclass(frozen=True, slots=True)
class Damage:
    """Unreadable bytes from `position`; offsets `first` to `end - 1` lost; the next good frame is at `resume`."""

    position: int
    resume: int
    first: int
    end: int

    @property
    def records(self) -> int:
        return self.end - self.first


def next_good(fd: int, position: int, expected: int) -> tuple[int, Frame] | None:
    """The first whole RECORD frame after `position` whose offset is `expected` or later, and where it starts."""
    # A header's seq begins with these bytes and its kind byte follows the seq: found by the regex engine, a
    # run of zeros costs no Python loop per byte.
    prefixes = [((expected >> 16) + k).to_bytes(_PREFIX, "big") for k in (0, 1)]
    seq_then_kind = b"(?:" + b"|".join(map(re.escape, prefixes)) + b").." + re.escape(bytes([RECORD]))
    headers = re.compile(b"(?=" + seq_then_kind + b")", re.DOTALL)
    size = os.fstat(fd).st_size
    at = position + 1
    while at < size:
        chunk = os.pread(fd, CHUNK + HEAD_SIZE, at)
        for match in headers.finditer(chunk, 0, CHUNK + _PREFIX + 3):
            found = match.start()
            if found >= CHUNK:
                break
            start = at + found - _SEQ_AT
            if start > position and (frame := _frame(fd, chunk, found - _SEQ_AT, start, expected)) is not None:
                return start, frame
        at += CHUNK
    return None


def _frame(fd: int, chunk: bytes, i: int, start: int, expected: int) -> Frame | None:
    """The frame at `start` if it is whole, intact and of an offset from `expected` on (cheap checks first)."""
    head = chunk[i : i + HEAD_SIZE] if i >= 0 else b""
    if len(head) < HEAD_SIZE:
        head = os.pread(fd, HEAD_SIZE, start)
    if len(head) < HEAD_SIZE or head[HEAD_SIZE - 1] != RECORD:
        return None
    length = int.from_bytes(head[:4], "big")
    if length > MAX_PAYLOAD or int.from_bytes(head[_SEQ_AT : _SEQ_AT + 8], "big") < expected:
        return None
    frames = list(read_frames(os.pread(fd, HEAD_SIZE + length, start)))
    return frames[0] if frames else None


class _Seen:
    """The damages reported in this process, once each."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.keys: set[tuple[Path, int]] = set()
        self.latest: list[tuple[Path, str]] = []


_seen = _Seen()


def report(directory: Path, topic: str, partition: int, damage: Damage, *, segment: int) -> None:
    """Log and count `damage` in partition `directory`, unless this process has already (any thread)."""
    if damage.records <= 0:
        return
    with _seen.lock:
        if (directory, damage.first) in _seen.keys:
            return
        _seen.keys.add((directory, damage.first))
        summary = f"{topic}[{partition}] offsets {damage.first}-{damage.end - 1} corrupt, skipped"
        _seen.latest = [*_seen.latest, (directory, summary)][-_KEPT:]
    logger.error(
        "embedded log %s: %d corrupt record(s) skipped, offsets %d-%d (segment %d, bytes %d-%d); read on from %d",
        directory,
        damage.records,
        damage.first,
        damage.end - 1,
        segment,
        damage.position,
        damage.resume,
        damage.end,
        extra={"topic": topic, "partition": partition},
    )
    default_metrics().log_corrupt(topic, damage.records)


def reported(root: Path) -> list[str]:
    """What was reported under `root` in this process, latest last (for the log's health)."""
    with _seen.lock:
        return [summary for directory, summary in _seen.latest if directory.is_relative_to(root)]
