"""The rollup: a consumer group over the notifier's verdicts and outcomes, counting them into the store.

Exactly once: each batch's events and the positions they reach are one store transaction, moving each
position only from the value this reporter read (so a reporter that lost a partition in a rebalance is
fenced, not counted twice). The log's own group offsets are committed after, as a hint where to resume:
records before the store's position are skipped when read again. A SIGKILL at any moment loses the batch
in flight or nothing; the next start resumes from what the store holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from clickbus.log.port import Consumer, Entry, Log, Topic, TopicPartition
from clickbus.reports.counting import event_of, generation_of
from clickbus.reports.port import Batch, Event, Fenced, Move, Store, StoreUnavailable

logger = logging.getLogger(__name__)
T = TypeVar("T")

TOPICS = (Topic.VERDICTS, Topic.DELIVERIES)
RETRY_S = (0.1, 0.5, 1.0, 2.0, 5.0)
# After a batch of fewer than LINGER_BELOW records, wait this long before fetching again: each fetch is a read
# of every partition on a thread and each batch a store transaction, and the notifier syncs verdicts and
# outcomes at every round, so under a steady trickle of clicks the rollup paid both for every few records
# (in-process reporting cost about 140 us per click at 2,000 clicks/s without a linger). 0.5 s cost reports
# their freshness (0.2 -> 0.9 s at 1,000 clicks/s); with 0.1 s runs give 0.21-0.26 s (the 1.0 s of some was
# the embedded log finding a new partition only once a second, since fixed), and the default run's CPU per
# redirect in `python -m bench redirect` (against `--no-notifier` in the same run: 2.52x, 2.43x at 0.5 s, 2.35x at
# 0.05 s) moved within its noise. A rate that fills LINGER_BELOW in LINGER_S is fetched without pause.
LINGER_S = 0.1
LINGER_BELOW = 2000


class Rollup:
    """One member of the reporting group: fetch, count, store, commit."""

    def __init__(
        self,
        log: Log,
        store: Store,
        group: str,
        *,
        batch_max: int = 5000,
        fetch_wait_s: float = 0.2,
        log_group: str | None = None,
        dedup_window_s: float = 3600.0,
        linger_s: float = LINGER_S,
    ) -> None:
        self.store = store
        self.group = group
        self.batch_max = batch_max
        self.fetch_wait_s = fetch_wait_s
        self.dedup_window_s = dedup_window_s
        self.linger_s = linger_s
        self.counted = 0  # events added to the store by this process
        self.waiting = False  # the store is unavailable and a batch waits for it
        # the log's group offsets are a hint (the store's positions decide); tests name another to lag them
        self._consumer: Consumer = log.consumer(TOPICS, log_group or group, on_assign=self._on_assign)
        self._positions: dict[TopicPartition, int] = {}
        self._held: set[TopicPartition] = set()  # the partitions this member was last assigned
        self._reload = True
        self._stopping = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        self._runner = asyncio.create_task(self._run(), name="clickbus-reports-rollup")

    async def stop(self, timeout: float) -> None:
        """Finish the batch being written (within `timeout`), then leave the group."""
        self._stopping.set()
        if self._runner is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._runner), timeout)
            if not self._runner.done():
                self._runner.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._runner
        await self._consumer.stop(timeout)

    async def _on_assign(self, tps: Sequence[TopicPartition]) -> None:
        logger.info("reports group %s assigned %s", self.group, " ".join(f"{t}[{p}]" for t, p in sorted(tps)))
        self._held = set(tps)
        self._reload = True  # partitions moved: read the store's positions again before counting more

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self._step()
            except asyncio.CancelledError:
                raise
            except Exception:  # reporting must never stop for a bad batch: it is read again after a restart
                logger.exception("reports rollup step failed")
                await self._pause(RETRY_S[-1])

    async def _step(self) -> None:
        if self._reload:
            self._reload = False
            self._positions = await self._patiently(lambda: self.store.positions(self.group))
        entries = await self._consumer.fetch(max_records=self.batch_max, timeout_s=self.fetch_wait_s)
        while True:
            batch = self.batch(entries)
            if batch is None:
                return
            try:
                self.counted += await self._patiently(functools.partial(self.store.apply, batch))
                break
            except Fenced as exc:
                # Another member moved a position while this one fetched (a rebalance). These entries are counted
                # again past the positions it reached, not dropped: the consumer has moved on past them, and
                # what of them lies beyond the new positions would never be read again (an undercount).
                logger.info("reports: %s; counting the batch again past the store's positions", exc)
                self._positions = await self._patiently(lambda: self.store.positions(self.group))
                entries = [e for e in entries if (e.topic, e.partition) in self._held]  # the others' new owner reads
                if self._stopping.is_set():
                    return
        for move in batch.moves:
            self._positions[(move.topic, move.partition)] = move.next
        try:
            await self._consumer.commit({(m.topic, m.partition): m.next for m in batch.moves})
        except Exception as exc:  # only a hint: the store's positions are what counts
            logger.debug("reports log commit failed: %s", exc)
        if len(entries) < min(LINGER_BELOW, self.batch_max) and self.linger_s > 0:
            await self._pause(self.linger_s)  # a stop ends it

    def batch(self, entries: Sequence[Entry]) -> Batch | None:
        """The transaction for `entries`: what is past the store's position, and the positions it reaches."""
        moves: dict[TopicPartition, Move] = {}
        events: list[Event] = []
        for entry in entries:
            tp = (entry.topic, entry.partition)
            stored = self._positions.get(tp)
            if stored is not None and entry.offset < stored:
                continue  # counted before the last stop; the log's hint lagged the store
            move = moves.get(tp)
            moves[tp] = Move(entry.topic, entry.partition, move.expected if move else stored, entry.offset + 1)
            if (event := event_of(entry.value, generation_of(entry.timestamp_ms, self.dedup_window_s))) is not None:
                events.append(event)
        return Batch(self.group, list(moves.values()), events) if moves else None

    async def _patiently(self, work: Callable[[], Awaitable[T]]) -> T:
        """`work()`, again and again while the store is unavailable (a stop cancels the wait)."""
        tries = 0
        while True:
            try:
                result = await work()
                self.waiting = False
                return result
            except StoreUnavailable as exc:
                if self._stopping.is_set():
                    raise
                self.waiting = True
                logger.warning("reports store unavailable: %s", exc)
                await self._pause(RETRY_S[min(tries, len(RETRY_S) - 1)])
                tries += 1

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
