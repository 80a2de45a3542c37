"""A consumer group member on the embedded log: every partition of its topics, resumed from the group's commits.

The embedded log has no group coordinator: a member is assigned every partition there is,
and finds partitions that appear later (a worker started after it) as it fetches.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from clickbus.log.port import AssignCallback, Entry, TopicPartition
from clickbus.log.segment_reader import ReaderSet

if TYPE_CHECKING:
    from clickbus.log.embedded import EmbeddedLog

POLL_S = 0.05
DISCOVER_S = 1.0


class Wakeup:
    """Lets in-process readers wait for the next synced group instead of polling."""

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[None]] = []

    def fire(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self, timeout: float) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(waiter, timeout)


class EmbeddedConsumer:
    """One member of `group` over `topics`; commits go to the log's offset store."""

    def __init__(self, log: EmbeddedLog, topics: Sequence[str], group: str, on_assign: AssignCallback | None) -> None:
        self.log = log
        self.group = group
        self.on_assign = on_assign
        self._readers = ReaderSet(log.path, topics)
        self._committed: dict[TopicPartition, int] = {}
        self._discovered_at = 0.0

    async def start(self) -> None:
        for topic in self._readers.topics:
            for partition, offset in (await asyncio.to_thread(self.log.offsets.committed, self.group, topic)).items():
                self._committed[(topic, partition)] = offset
        await self._discover(always=True)

    async def _discover(self, *, always: bool = False) -> None:
        """Take every partition that has appeared since the last look (all of them at the start)."""
        self._discovered_at = time.monotonic()
        found = await asyncio.to_thread(self._readers.unknown)
        for tp in found:
            self._readers.add(tp, self._committed.get(tp, 0))  # below the oldest record left: from there
        if (found or always) and self.on_assign is not None:
            await self.on_assign(sorted(self._readers.readers))

    async def stop(self, timeout: float) -> None:
        self._readers.close()

    async def fetch(self, *, max_records: int, timeout_s: float) -> list[Entry]:
        deadline = time.monotonic() + timeout_s
        while True:
            if time.monotonic() - self._discovered_at >= DISCOVER_S:
                await self._discover()
            entries = await asyncio.to_thread(self._readers.read, max_records, self.log.limits())
            remaining = deadline - time.monotonic()
            if entries or remaining <= 0:
                return entries
            await self.log.wait_for_append(min(remaining, POLL_S))

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        await self.log.commit_offsets(self.group, offsets)
        self._committed.update(offsets)

    async def lag(self) -> dict[TopicPartition, int]:
        """Records per partition past the group's committed offset."""
        tps = sorted(self._readers.readers)
        ends = await self.log.end_offsets(tps)
        return {tp: max(0, ends[tp] - self._committed.get(tp, 0)) for tp in tps}
