"""Which offsets may be committed while records finish out of order.

Records are processed concurrently, so they finish in any order; the commit
for a partition may only move up to its lowest unfinished offset, so that a
crash re-reads everything not yet finished (at-least-once).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from clickbus.log.port import TopicPartition


@dataclass(slots=True)
class _Partition:
    pending: set[int] = field(default_factory=set)
    heap: list[int] = field(default_factory=list)
    next: int | None = None  # one past the highest offset started
    committed: int | None = None


class OffsetTracker:
    """Started and finished offsets per partition; says what may be committed."""

    def __init__(self) -> None:
        self._parts: dict[TopicPartition, _Partition] = {}

    def reset(self, keep: set[TopicPartition]) -> None:
        """Forget every partition not in `keep` (after a rebalance took them away)."""
        self._parts = {tp: p for tp, p in self._parts.items() if tp in keep}

    def start(self, tp: TopicPartition, offset: int) -> None:
        part = self._parts.get(tp)
        if part is None:  # not `setdefault`: that made (and dropped) a _Partition for every record
            part = self._parts[tp] = _Partition()
        part.pending.add(offset)
        heapq.heappush(part.heap, offset)
        if part.next is None or offset >= part.next:
            part.next = offset + 1

    def finish(self, tp: TopicPartition, offset: int) -> None:
        part = self._parts.get(tp)
        if part is not None:
            part.pending.discard(offset)

    def in_flight(self) -> int:
        return sum(len(p.pending) for p in self._parts.values())

    def committable(self) -> dict[TopicPartition, int]:
        """Next offset to read after a restart, per partition whose value moved since the last call."""
        moved = {}
        for tp, part in self._parts.items():
            while part.heap and part.heap[0] not in part.pending:
                heapq.heappop(part.heap)
            position = part.heap[0] if part.heap else part.next
            if position is not None and position != part.committed:
                moved[tp] = position
        return moved

    def committed(self, offsets: dict[TopicPartition, int]) -> None:
        for tp, offset in offsets.items():
            if tp in self._parts:
                self._parts[tp].committed = offset
