"""The consumer loop: read a topic in a group, process records concurrently, commit safely.

Each record becomes one tracked task. At most `max_in_flight` are alive at
once (the loop stops fetching until one finishes), and offsets are committed
every `commit_interval_s` up to the lowest unfinished one per partition. A
handler's synchronous `accept` runs in log order (dedup depends on that);
the coroutine it returns runs concurrently. Every partition of an assignment
is `prepare`d (its dedup window rebuilt) before its first record is accepted:
a Kafka member resumes each one, those it kept included, from the group's
committed offset, so records it had accepted since are read again; a kept
window would judge them duplicates of themselves and finish their offsets
while their deliveries were still in flight. For the same reason a rebuild
during which a new assignment arrives is done again. Commits name only the
partitions held now.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Mapping, Sequence
from typing import Protocol, runtime_checkable

from clickbus import tasks
from clickbus.log.port import Consumer, Entry, Log, TopicPartition
from clickbus.metrics import Metrics
from clickbus.notifier.offsets import OffsetTracker

logger = logging.getLogger(__name__)

FETCH_MAX = 500
FETCH_WAIT_S = 0.2
# After a fetch that found only a few records, wait this long before the next one, so that records arriving
# meanwhile come in one batch. Without it, every synced group of any topic (the edge's clicks, the notifier's
# own outcomes) woke the loop for a read of a handful of records: a thread hand-off, a read of every partition
# and a round of appends per few clicks, which cost more CPU than judging the clicks. Measured at 1,000 clicks/s
# (bench.delivery's latency part, 8 s, three alternations, the process's CPU with its appends): 20 ms gave a
# click-to-callback p50 of 19 ms for the least CPU (median 4.26 s); 5 ms gives a p50 of 3 ms and a p99 of 5 ms
# for 3 % more CPU (4.41 s); 3 ms and no linger cost more CPU again and were no faster.
LINGER_S = 0.005
LINGER_BELOW = 64  # records: a fetch this size or more is a batch already
ERROR_PAUSE_S = 1.0


class Handler(Protocol):
    async def prepare(self, firsts: Mapping[TopicPartition, int]) -> None:
        """Get ready for newly assigned partitions, given the first offset to process in each."""
        ...

    def accept(self, entry: Entry) -> Awaitable[None]:
        """Classify `entry` now, in log order; the returned awaitable finishes it."""
        ...


@runtime_checkable
class Lagging(Protocol):
    """A consumer that can say how far its group is behind (both adapters' consumers can)."""

    async def lag(self) -> Mapping[TopicPartition, int]:
        """Records per assigned partition past the group's committed offset."""
        ...


class GroupLoop:
    """One consumer group member driving a `Handler`."""

    def __init__(
        self,
        log: Log,
        topics: Sequence[str],
        group: str,
        handler: Handler,
        *,
        max_in_flight: int,
        commit_interval_s: float,
        drain_s: float,
        metrics: Metrics | None = None,
        linger_s: float = LINGER_S,
    ) -> None:
        self.group = group
        self.linger_s = linger_s
        self.metrics = metrics
        self.handler = handler
        self.max_in_flight = max_in_flight
        self.commit_interval_s = commit_interval_s
        self.drain_s = drain_s
        self.tracker = OffsetTracker()
        self._log = log
        self._topics = list(topics)
        self._consumer: Consumer = log.consumer(topics, group, on_assign=self._on_assign)
        self._joined = False  # the consumer is started and its loop may use it
        self._fresh = True  # never started: a rejoin after a failure needs a new one
        self._assigned: set[TopicPartition] = set()
        self._unprepared: set[TopicPartition] = set()
        self._assignments = 0  # how many the group gave: a rebuild that spans a new one must be done again
        self._tasks: set[asyncio.Future[None]] = set()  # distinct: records decided together share a round
        self._in_flight = 0  # records started and not finished
        self._room = asyncio.Event()
        self._stopping = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._linger = False  # the last fetch found only a few records

    async def start(self) -> None:
        """Join the group and run the loop (supervised: see `_life`); may be called again after a failure."""
        self._stopping.clear()
        await self._join()
        self._runner = tasks.supervise(f"notifier-loop:{self.group}", self._life, metrics=self.metrics)

    async def _join(self) -> None:
        if self._joined:
            return
        if not self._fresh:
            self._consumer = self._log.consumer(self._topics, self.group, on_assign=self._on_assign)
        self._fresh = False
        try:
            await self._consumer.start()
        except BaseException:
            with contextlib.suppress(Exception):  # whatever it had opened; the start's failure is the one to tell
                await self._consumer.stop(self.drain_s)
            raise
        self._joined = True

    async def _life(self) -> None:
        """One run of the loop. A run that fails leaves the group: the next rejoins from the committed
        offsets, so that records fetched and never started are read again (at-least-once)."""
        await self._join()
        try:
            await self._run()
        except Exception:
            self._joined = False
            with contextlib.suppress(Exception):  # the failure that matters is the one being raised
                await self._consumer.stop(self.drain_s)
            raise

    async def stop(self, timeout: float) -> None:
        """Stop fetching, let in-flight work finish for a while, commit, and leave the group."""
        self._stopping.set()
        self._room.set()
        if self._runner is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._runner), timeout)
            if not self._runner.done():
                self._runner.cancel()
        if self._joined:
            self._joined = False
            await self._consumer.stop(timeout)

    async def _on_assign(self, tps: Sequence[TopicPartition]) -> None:
        assigned = set(tps)
        self._unprepared = set(assigned)  # kept partitions too: each resumes from its committed offset
        self._assigned = assigned
        self._assignments += 1
        self.tracker.reset(assigned)

    async def _run(self) -> None:
        committer = tasks.supervise(f"notifier-commit:{self.group}", self._commit_every, metrics=self.metrics)
        try:
            while not self._stopping.is_set():
                await self._fetch_some()
        finally:
            await self._drain()
            committer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await committer
            await self._commit()

    async def _fetch_some(self) -> None:
        room = self.max_in_flight - self._in_flight
        if room < min(FETCH_MAX, self.max_in_flight // 2 or 1):  # fetch in batches, not one record per finish
            self._room.clear()
            await self._room.wait()
            return
        if self._linger:
            self._linger = False
            with contextlib.suppress(TimeoutError):  # a stop ends the wait at once
                await asyncio.wait_for(self._stopping.wait(), self.linger_s)
            return
        try:
            entries = await self._consumer.fetch(max_records=min(room, FETCH_MAX), timeout_s=FETCH_WAIT_S)
        except Exception as exc:  # a broker hiccup must not end the loop; records are re-fetched
            logger.warning("notifier fetch failed: %s", exc)
            await asyncio.sleep(ERROR_PAUSE_S)
            return
        self._linger = 0 < len(entries) < LINGER_BELOW and self.linger_s > 0
        await self._prepare(entries)
        for entry in entries:
            self._spawn(entry)

    async def _prepare(self, entries: Sequence[Entry]) -> None:
        firsts: dict[TopicPartition, int] = {}
        for entry in entries:
            tp = (entry.topic, entry.partition)
            if tp in self._unprepared and tp not in firsts:
                firsts[tp] = entry.offset
        if not firsts:
            return
        assignment = self._assignments
        try:  # all partitions of this batch at once: one read of each topic
            await self.handler.prepare(firsts)
        except Exception:  # carry on unprepared (dedup misses at worst) rather than stop consuming
            logger.exception("notifier could not prepare %s", sorted(firsts))
        if assignment == self._assignments:  # else a new one moved every position back: rebuild from there
            self._unprepared -= set(firsts)

    def _spawn(self, entry: Entry) -> None:
        tp = (entry.topic, entry.partition)
        self.tracker.start(tp, entry.offset)
        try:
            work = self.handler.accept(entry)
        except Exception:  # a bug for this record: keep it unfinished (re-read later), keep consuming
            logger.exception("notifier left %s@%d unfinished", tp, entry.offset)
            return
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        self._in_flight += 1
        task.add_done_callback(functools.partial(self._finished, tp, entry.offset))

    def _finished(self, tp: TopicPartition, offset: int, task: asyncio.Future[None]) -> None:
        self._tasks.discard(task)
        self._in_flight -= 1
        self._room.set()
        if task.cancelled():
            return  # left unfinished: re-read after a restart
        if (exc := task.exception()) is not None:
            logger.error("notifier left %s@%d unfinished", tp, offset, exc_info=exc)
            return
        self.tracker.finish(tp, offset)

    async def _drain(self) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self.drain_s)
        for task in set(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _commit_every(self) -> None:
        while True:
            await asyncio.sleep(self.commit_interval_s)
            await self._commit()
            await self._report_lag()

    async def _report_lag(self) -> None:
        if self.metrics is None or not isinstance(self._consumer, Lagging):
            return
        try:
            lag = await self._consumer.lag()
        except Exception as exc:  # a metric is never worth stopping the loop
            logger.debug("notifier lag unknown: %s", exc)
            return
        for (topic, partition), records in lag.items():
            self.metrics.consumer_lag(self.group, topic, partition, records)

    async def _commit(self) -> None:
        # only what this member holds: a batch fetched before a rebalance may hold records of a partition since
        # revoked, and a commit naming one is refused whole
        moved = {tp: offset for tp, offset in self.tracker.committable().items() if tp in self._assigned}
        if not moved:
            return
        try:
            await self._consumer.commit(moved)
        except Exception as exc:  # not committing only means re-reading; never crash the loop for it
            logger.warning("notifier commit failed: %s", exc)
            return
        self.tracker.committed(moved)

    @property
    def assigned(self) -> frozenset[TopicPartition]:
        """The partitions this member holds now."""
        return frozenset(self._assigned)

    def in_flight(self) -> int:
        return self._in_flight
