"""Retention of the embedded log, as Kafka's: whole old segments are deleted, by age and by size.

Per partition, closed segments go oldest first while the oldest was last written more than
`max_age_s` ago or the partition holds more than `max_bytes`; the active segment always
stays. Deleting records that a consumer group has not yet committed is reported: the
caller logs it loudly and counts it (`clickbus_log_retention_lost_records_total`).
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from clickbus.log.segment import INDEX_SUFFIX, bases, segment_path


@dataclass(frozen=True, slots=True)
class Retention:
    max_age_s: float
    max_bytes: int


@dataclass(frozen=True, slots=True)
class Segment:
    """A closed segment: its first offset, the first offset after it, its size and last write time."""

    base: int
    end: int
    size: int
    mtime: float


@dataclass(frozen=True, slots=True)
class Lost:
    """Records a group had not committed when retention deleted them: offsets `first` to `end - 1`."""

    group: str
    first: int
    end: int

    @property
    def records(self) -> int:
        return self.end - self.first


def doomed(closed: Sequence[Segment], active_size: int, retention: Retention, now: float) -> list[Segment]:
    """The closed segments (oldest first) that retention deletes."""
    total = active_size + sum(s.size for s in closed)
    out = []
    for segment in closed:
        if now - segment.mtime <= retention.max_age_s and total <= retention.max_bytes:
            break
        out.append(segment)
        total -= segment.size
    return out


def lost(deleted: Sequence[Segment], committed: Mapping[str, int]) -> list[Lost]:
    """What each group loses when `deleted` (consecutive, oldest first) go."""
    if not deleted:
        return []
    first, end = deleted[0].base, deleted[-1].end
    return [Lost(group, max(offset, first), end) for group, offset in sorted(committed.items()) if offset < end]


def closed_segments(directory: Path, active_base: int) -> list[Segment]:
    """The partition's segments before the active one (blocking)."""
    found = [b for b in bases(directory) if b < active_base]
    out = []
    for base, end in itertools.pairwise([*found, active_base]):  # none before the first roll
        with contextlib.suppress(FileNotFoundError):
            stat = os.stat(segment_path(directory, base))
            out.append(Segment(base, end, stat.st_size, stat.st_mtime))
    return out


def delete(directory: Path, segments: Sequence[Segment]) -> None:
    """Remove segments, oldest first, so that readers always see a contiguous tail (blocking)."""
    for segment in segments:
        for suffix in (INDEX_SUFFIX, ".log"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(segment_path(directory, segment.base, suffix))
