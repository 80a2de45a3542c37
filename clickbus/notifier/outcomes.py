"""Outcomes, parked deliveries and dead letters, written durably to the log.

Every attempt and every verdict becomes one JSON record on `Topic.DELIVERIES`
(keyed by click id), so the clicks topic stays immutable and operators can
tail what happened to any click. A click is finished only once what was
decided about it is durable; appends that fail are retried until they succeed
(or the notifier stops, leaving the click unfinished and so re-read later).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial
from typing import Any

import orjson

from clickbus.console.recent import RecentClicks
from clickbus.errors import LogUnavailable
from clickbus.log.port import Log, Topic
from clickbus.metrics import Metrics
from clickbus.notifier.retry import Parked, idempotency_key

logger = logging.getLogger(__name__)

APPEND_RETRY_S = (0.05, 0.2, 1.0, 2.0)


class Outcome(StrEnum):
    VALID = "valid"  # the verdict on a click or impression judged valid (reports count it)
    DELIVERED = "delivered"
    RETRY = "retry"  # an attempt failed; the click is parked for another one
    PARKED = "parked"  # not attempted (breaker open, bidder saturated); parked
    DEAD = "dead"  # dead-lettered
    INVALID = "invalid"  # invalid traffic, never delivered
    NO_BIDDER = "no_bidder"  # no member configured for the click
    MALFORMED = "malformed"  # not a readable record


@dataclass(slots=True)  # not frozen: a frozen __init__ sets each field through object.__setattr__, 3x the cost
class DeliveryOutcome:
    """One record on `Topic.DELIVERIES` (never changed once made: `dataclasses.replace` makes another)."""

    click_id: str
    member_id: int
    attempt: int
    outcome: str
    status: int | None = None
    latency_ms: float | None = None
    error: str = ""
    reason: str | None = None
    click_response: Any = None
    due_ms: int | None = None
    test: bool = False
    ts_ms: int = field(default_factory=lambda: time.time_ns() // 1_000_000)
    dims: dict[str, Any] | None = None  # what reports count this by (`records.dimensions`); None when unknown
    step: int = 0  # the decision this records (see retry.py): with `click_id`, what makes it unique
    idempotency_key: str = field(init=False)  # `<click_id>/<step>`: copies of one record share it

    def __post_init__(self) -> None:
        self.idempotency_key = idempotency_key(self.click_id, self.step)

    def to_json(self) -> bytes:
        return orjson.dumps(self)


class RetryDepth:
    """The retry-queue gauge: clicks parked and not yet taken to their next step.

    A parked click counts from the moment it is written to `Topic.RETRY` (unread) and while the
    retry loop holds it (taken), until that loop finishes with it. A click parked again from the
    retry loop is counted for its new record before its old one finishes, so the gauge never
    reads 0 while the click waits in the log to be read back.
    """

    __slots__ = ("_held", "_metrics", "_unread")

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._unread: Counter[str] = Counter()  # click ids written by this process, not yet read back
        self._held = 0  # unread records plus records taken and not finished

    def written(self, click_id: str) -> None:
        """A parked record for `click_id` is being written."""
        self._unread[click_id] += 1
        self._move(+1)

    def taken(self, click_id: str) -> None:
        """The retry loop read a parked record (written by this process, or before a restart)."""
        unread = self._unread.pop(click_id, 0)
        if unread > 1:
            self._unread[click_id] = unread - 1
        if not unread:  # not counted yet: written before this process started
            self._move(+1)

    def finished(self) -> None:
        """The retry loop is done with one record it took (delivered, dead, parked again, or stopped)."""
        self._move(-1)

    def _move(self, change: int) -> None:
        self._held += change
        self._metrics.retry_depth(self._held)


class _Round:
    """The records decided in one turn of the event loop, appended together, and what follows once they are durable."""

    __slots__ = ("after", "records", "task")

    def __init__(self) -> None:
        self.records: dict[str, list[tuple[bytes, bytes]]] = {}  # topic -> (key, value), in decision order
        self.after: list[Callable[[], None]] = []  # counters and the console's ring: only once durable
        self.task: asyncio.Task[None] | None = None


class Recorder:
    """Writes outcomes, parked deliveries and dead letters; counts outcomes for metrics.

    What is decided in one turn of the event loop (a fetched batch judged, the callbacks that came back
    together) is appended as one round: one task and one append per topic for all of it, rather than a task
    and an append per record. Each caller awaits its round, so a click is still finished only once what was
    decided about it is durable; a round whose append fails is retried (the records that failed only) until
    it succeeds or the notifier stops.
    """

    def __init__(self, log: Log, metrics: Metrics) -> None:
        self.log = log
        self.metrics = metrics
        self.counts: Counter[str] = Counter()
        self.retry_depth = RetryDepth(metrics)
        self.recent = RecentClicks()  # the console's latest clicks (see clickbus.console.feed)
        self._round: _Round | None = None
        self._rounds: set[asyncio.Task[None]] = set()  # in flight: `stop` cancels them

    async def append(self, topic: str, key: bytes, value: bytes) -> None:
        """Append durably, retrying for as long as the log is unavailable (a stop cancels this)."""
        tries = 0
        while True:
            try:
                await self.log.append(topic, key, value)
                return
            except LogUnavailable as exc:
                logger.warning("notifier append to %s failed: %s", topic, exc)
                await asyncio.sleep(APPEND_RETRY_S[min(tries, len(APPEND_RETRY_S) - 1)])
                tries += 1

    def outcome(self, outcome: DeliveryOutcome) -> asyncio.Task[None]:
        """Append `outcome`; counted once durable, like the edge counts clicks."""
        return self._queue(
            Topic.DELIVERIES, outcome.click_id.encode(), outcome.to_json(), partial(self._counted, outcome)
        )

    def _counted(self, outcome: DeliveryOutcome) -> None:
        self.counts[outcome.outcome] += 1
        self.metrics.delivery(outcome.member_id, outcome.outcome)
        self.recent.outcome(outcome.click_id, outcome.outcome, outcome.status)

    def verdict(self, outcome: DeliveryOutcome) -> asyncio.Task[None]:
        """A `valid` verdict, on its own topic: deliveries keeps one record per attempt or invalid verdict."""
        return self._queue(Topic.VERDICTS, outcome.click_id.encode(), outcome.to_json())

    def park(self, parked: Parked, outcome: DeliveryOutcome) -> asyncio.Task[None]:
        # counted before the append: the retry loop may read the record back before the append returns
        self.retry_depth.written(parked.click.click_id)
        self._queue(Topic.RETRY, parked.click.click_id.encode(), parked.to_json())
        return self.outcome(outcome)  # the same round

    def dead_letter(self, parked: Parked, outcome: DeliveryOutcome) -> asyncio.Task[None]:
        logger.warning(
            "click %s for member %d dead-lettered: %s %s",
            parked.click.click_id,
            parked.click.member_id,
            parked.reason,
            parked.last_error or parked.last_status or "",
        )
        self._queue(Topic.DLQ, parked.click.click_id.encode(), parked.to_json())
        self._queue(Topic.DELIVERIES, outcome.click_id.encode(), outcome.to_json(), partial(self._counted, outcome))
        return self._queue_after(partial(self.metrics.dead_letter, parked.click.member_id))

    def _queue_after(self, after: Callable[[], None]) -> asyncio.Task[None]:
        current = self._current()
        current.after.append(after)
        assert current.task is not None
        return current.task

    def _queue(
        self, topic: str, key: bytes, value: bytes, after: Callable[[], None] | None = None
    ) -> asyncio.Task[None]:
        current = self._current()
        records = current.records.get(topic)
        if records is None:
            records = current.records[topic] = []
        records.append((key, value))
        if after is not None:
            current.after.append(after)
        assert current.task is not None
        return current.task

    def _current(self) -> _Round:
        current = self._round
        if current is None:
            current = self._round = _Round()
            # the task's first step runs on the loop's next turn: what else this turn decides joins the round
            task = current.task = asyncio.ensure_future(self._write(current))
            self._rounds.add(task)
            task.add_done_callback(self._rounds.discard)
        return current

    async def _write(self, current: _Round) -> None:
        if self._round is current:
            self._round = None  # closed: what is decided from now on goes into the next round
        await asyncio.gather(*(self._append_all(topic, records) for topic, records in current.records.items()))
        for after in current.after:
            after()

    async def _append_all(self, topic: str, records: list[tuple[bytes, bytes]]) -> None:
        """Append `records` durably, retrying those that fail for as long as the log is unavailable."""
        many = getattr(self.log, "append_many", None)
        if many is None:  # a log without batches (a test's): one append each
            await asyncio.gather(*(self.append(topic, key, value) for key, value in records))
            return
        tries = 0
        while records:
            results: list[BaseException | None] = await many(topic, records)
            failed = [record for record, result in zip(records, results, strict=True) if result is not None]
            if not failed:
                return
            for result in results:
                if result is not None and not isinstance(result, LogUnavailable):
                    raise result
            logger.warning("notifier append to %s failed: %s", topic, next(r for r in results if r is not None))
            await asyncio.sleep(APPEND_RETRY_S[min(tries, len(APPEND_RETRY_S) - 1)])
            tries += 1
            records = failed

    async def stop(self) -> None:
        """Cancel the rounds still being appended (their clicks stay unfinished: read again after a restart)."""
        for task in list(self._rounds):
            task.cancel()
        await asyncio.gather(*self._rounds, return_exceptions=True)
