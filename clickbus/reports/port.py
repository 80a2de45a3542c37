"""The report store port: positions and counts written in one transaction, and grouped reads.

Two adapters implement it: `SQLiteStore` (a file in data_dir, the embedded default) and
`PostgresStore` (scale-out). `tests/reports/test_contract.py` runs the same checks on both.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from clickbus.errors import ClickbusError
from clickbus.log.port import TopicPartition
from clickbus.reports.schema import BUCKETS, COUNTERS, Key

Values = list[int]  # in `VALUES` order: counters, then histogram buckets
GENERATION_BYTES = 4
SEEN_KEY_BYTES = GENERATION_BYTES + 16 + 2 + 1  # generation, record id, step, outcome (`counting.seen_key`)


class StoreUnavailable(ClickbusError):
    """The report store cannot be reached or written now."""


class Fenced(ClickbusError):
    """A position moved under this writer (another reporter owns the partition now): nothing was written."""


@dataclass(frozen=True, slots=True)
class Move:
    """A partition's position moving from `expected` (None: no position stored yet) to `next`."""

    topic: str
    partition: int
    expected: int | None
    next: int


@dataclass(frozen=True, slots=True)
class Event:
    """One record's contribution: its dedup key, its row and what it adds there."""

    seen: bytes  # (generation, record id, step, outcome): a record written twice is counted once
    key: Key
    counts: tuple[int, int, int, int, int]  # COUNTERS
    latency_bucket: int = -1  # histogram bucket of a delivered callback's latency, or -1


@dataclass(slots=True)
class Batch:
    """What one transaction writes: moved positions of `group` and the events read up to them."""

    group: str
    moves: Sequence[Move]
    events: Sequence[Event] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Query:
    """A grouped read: `hour` in [since, until), grouped by `by` (`grain`: None, hour, day or month)."""

    since: int
    until: int
    by: tuple[str, ...]  # dimension names, in the order asked
    grain: str | None = None
    filters: tuple[tuple[str, int | str], ...] = ()


# A grouped row: the time bucket (or None), every dimension (None when not grouped), reason, then VALUES.
RawRow = tuple[int | str | None, ...]


DAY = 86400


def identity(seen: bytes) -> bytes:
    """A dedup key without its generation: what every copy of a record shares."""
    return seen[GENERATION_BYTES:] if len(seen) == SEEN_KEY_BYTES else seen


def generation(seen: bytes) -> int:
    """The generation a dedup key starts with (0 for a key of another shape)."""
    return int.from_bytes(seen[:GENERATION_BYTES]) if len(seen) == SEEN_KEY_BYTES else 0


def neighbours(seen: bytes) -> tuple[bytes, bytes]:
    """The same record's keys one generation before and after: where a copy written across a window's edge is
    remembered (after: a copy stamped earlier than its original, by another host's clock)."""
    if len(seen) != SEEN_KEY_BYTES:
        return seen, seen
    generation = int.from_bytes(seen[:GENERATION_BYTES])
    rest = seen[GENERATION_BYTES:]
    before = max(0, generation - 1).to_bytes(GENERATION_BYTES)
    after = ((generation + 1) % 2**32).to_bytes(GENERATION_BYTES)
    return before + rest, after + rest


def forget_below(newest: bytes | None) -> bytes | None:
    """The smallest key kept once `newest` is the newest key stored: its generation and the one before."""
    if newest is None or len(newest) != SEEN_KEY_BYTES:
        return None
    return max(0, int.from_bytes(newest[:GENERATION_BYTES]) - 1).to_bytes(GENERATION_BYTES)


def firsts(events: Sequence[Event]) -> list[Event]:
    """The events of a batch less later copies of one record (a copy may carry the next generation)."""
    taken: set[bytes] = set()
    out = []
    for event in events:
        if (same := identity(event.seen)) not in taken:
            taken.add(same)
            out.append(event)
    return out


def by_day(rows: dict[Key, Values]) -> dict[Key, Values]:
    """The same counts on day rows: each hour's key with its hour moved to midnight (UTC), summed."""
    days: dict[Key, Values] = {}
    for key, values in rows.items():
        hour = int(key[0])
        day_key = (hour - hour % DAY, *key[1:])
        total = days.get(day_key)
        if total is None:
            days[day_key] = list(values)
        else:
            for i, n in enumerate(values):
                total[i] += n
    return days


def day_span(query: Query) -> tuple[int, int]:
    """The whole days of a by-day or by-month query, read from day rows; an empty span at `until` otherwise.

    The hours before and after the span are read from the hourly rows, so the answer is the same.
    """
    if query.grain not in ("day", "month"):
        return query.until, query.until
    first = -(-query.since // DAY) * DAY
    last = query.until - query.until % DAY
    return (first, last) if first < last else (query.until, query.until)


def add_events(events: Sequence[Event]) -> dict[Key, Values]:
    """Sum events into one value list per row."""
    rows: dict[Key, Values] = {}
    width = len(COUNTERS)
    for event in events:
        values = rows.get(event.key)
        if values is None:
            values = rows[event.key] = [0] * (width + BUCKETS)
        for i, n in enumerate(event.counts):
            values[i] += n
        if event.latency_bucket >= 0:
            values[width + event.latency_bucket] += 1
    return rows


class Store(Protocol):
    """Where the rows live; every write is one transaction holding positions and counts together."""

    async def start(self) -> None:
        """Connect and apply the numbered migrations not yet applied."""
        ...

    async def stop(self) -> None: ...

    async def positions(self, group: str) -> dict[TopicPartition, int]:
        """The next offset to count, per partition, for `group`."""
        ...

    async def apply(self, batch: Batch) -> int:
        """Move positions and add the events not seen before, at once; the number added. Raise `Fenced`."""
        ...

    def query(self, query: Query) -> AsyncIterator[RawRow]:
        """Grouped sums, ordered by time then dimensions, streamed."""
        ...

    async def maintain(self, *, fold_before: int, delete_before: int) -> None:
        """Fold hourly rows before `fold_before` into days, delete rows before `delete_before`, and forget
        dedup keys older than the two newest generations stored (`forget_below`)."""
        ...
