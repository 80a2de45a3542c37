"""A consumer group member on the embedded log: the partitions it holds, resumed from the group's commits.

The embedded log has no group coordinator; the kernel is one. A member holds a partition by an
exclusive `flock` on `groups/<group>/<topic>-<partition>.lock` under the log, so each partition
has exactly one member: two members never deliver one click twice. A member takes every partition
nobody holds, at its start and then as it fetches: partitions that appear later (a worker started
after it), and those of a member that has gone (stopped, or killed: the kernel drops its locks),
each from the group's last commit. It keeps what it holds until it stops, so one member normally
holds a topic's every partition, as the notifier's dedup wants: on this log a duplicate may sit in
any partition (a partition per writing process, not per key), and only a member holding both sees
the pair. A second member is a standby until it finds partitions free.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from clickbus.log.locks import try_lock_file
from clickbus.log.port import AssignCallback, Entry, TopicPartition
from clickbus.log.segment_reader import ReaderSet

if TYPE_CHECKING:
    from clickbus.log.embedded import EmbeddedLog

POLL_S = 0.05
DISCOVER_S = 1.0
GROUPS_DIR = "groups"


def group_dir(root: Path, group: str) -> Path:
    """Where `group`'s partition locks live: any group name is one safe file name (dots too, so never `..`)."""
    return root / GROUPS_DIR / quote(group, safe="").replace(".", "%2E")


class Wakeup:
    """Lets in-process readers wait for the next synced group of the topics they read instead of polling.

    Per topic: a reader of clicks is not woken by the notifier's own outcome appends, which sync as
    often as the clicks do (each wake is a thread hand-off and a read of every partition).
    """

    def __init__(self) -> None:
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}

    def fire(self, topic: str) -> None:
        """A group of `topic` was synced: wake its readers."""
        waiters = self._waiters.pop(topic, None)
        if waiters:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def wait(self, topics: Iterable[str], timeout: float) -> None:
        """Until a group of one of `topics` is synced, or `timeout`."""
        waiter = asyncio.get_running_loop().create_future()
        lists = [self._waiters.setdefault(topic, []) for topic in topics]
        for waiting in lists:
            waiting.append(waiter)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter, timeout)
        finally:
            for waiting in lists:  # a topic that never fires must not keep every waiter of the others
                with contextlib.suppress(ValueError):
                    waiting.remove(waiter)


class EmbeddedConsumer:
    """One member of `group` over `topics`; commits go to the log's offset store."""

    def __init__(self, log: EmbeddedLog, topics: Sequence[str], group: str, on_assign: AssignCallback | None) -> None:
        self.log = log
        self.group = group
        self.on_assign = on_assign
        self._readers = ReaderSet(log.path, topics)
        self._committed: dict[TopicPartition, int] = {}
        self._locks: dict[TopicPartition, int] = {}  # the flock fd of each partition held
        self._discovered_at = 0.0
        self._opened_seen = -1  # the log's `partitions_opened` at the last look

    async def start(self) -> None:
        await self._discover(always=True)

    async def _discover(self, *, always: bool = False) -> None:
        """Take every partition nobody holds (all of them at the start, unless another member has them)."""
        self._discovered_at = time.monotonic()
        self._opened_seen = self.log.partitions_opened
        taken = await asyncio.to_thread(self._take_free)
        for tp, (fd, committed) in taken.items():
            self._locks[tp] = fd
            if committed is not None:
                self._committed[tp] = committed
            self._readers.add(tp, self._committed.get(tp, 0))  # below the oldest record left: from there
        if (taken or always) and self.on_assign is not None:
            await self.on_assign(sorted(self._readers.readers))

    def _take_free(self) -> dict[TopicPartition, tuple[int, int | None]]:
        """Lock the free partitions (blocking): per partition, its lock and the group's commit read after taking it."""
        directory = group_dir(self.log.path, self.group)
        held: dict[TopicPartition, int] = {}
        try:
            for tp in self._readers.unknown():
                if (fd := try_lock_file(directory / f"{tp[0]}-{tp[1]}.lock")) is not None:
                    held[tp] = fd
            # read now, not at the start: a member gone since may have committed after it
            commits = {topic: self.log.offsets.committed(self.group, topic) for topic in {tp[0] for tp in held}}
        except BaseException:
            for fd in held.values():
                os.close(fd)
            raise
        return {tp: (fd, commits[tp[0]].get(tp[1])) for tp, fd in held.items()}

    async def stop(self, timeout: float) -> None:
        self._readers.close()
        locks, self._locks = self._locks, {}
        for fd in locks.values():  # after the owner's last commit: the next member resumes from it
            os.close(fd)

    async def fetch(self, *, max_records: int, timeout_s: float) -> list[Entry]:
        deadline = time.monotonic() + timeout_s
        while True:
            # another process's partitions are found by looking every DISCOVER_S; this one's as it opens them
            if self.log.partitions_opened != self._opened_seen or time.monotonic() - self._discovered_at >= DISCOVER_S:
                await self._discover()
            entries = await asyncio.to_thread(self._readers.read, max_records, self.log.limits())
            remaining = deadline - time.monotonic()
            if entries or remaining <= 0:
                return entries
            await self.log.wait_for_append(self._readers.topics, min(remaining, POLL_S))

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        await self.log.commit_offsets(self.group, offsets)
        self._committed.update(offsets)

    async def lag(self) -> dict[TopicPartition, int]:
        """Records per partition past the group's committed offset."""
        tps = sorted(self._readers.readers)
        ends = await self.log.end_offsets(tps)
        return {tp: max(0, ends[tp] - self._committed.get(tp, 0)) for tp in tps}
