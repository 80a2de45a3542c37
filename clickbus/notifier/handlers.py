"""What the notifier does with each record of its two inputs.

`IntakeHandler` reads clicks (and impressions): it drops malformed records,
records the verdict on invalid ones, and hands valid clicks to the dispatcher.
`RetryHandler` reads parked deliveries and hands each to the dispatcher once
it is due.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, fields

import orjson

from clickbus.config import NotifierConfig
from clickbus.log.port import HEADER_KIND, Entry, Log, Topic, TopicPartition
from clickbus.notifier.dedup import DedupWindow
from clickbus.notifier.dispatch import Dispatcher
from clickbus.notifier.ivt import verdict
from clickbus.notifier.outcomes import DeliveryOutcome, Outcome, Recorder
from clickbus.notifier.retry import Parked
from clickbus.records import ClickRecord, ImpressionRecord

logger = logging.getLogger(__name__)

Record = ClickRecord | ImpressionRecord


def short_topic(name: str) -> Topic:
    """The `Topic` of a storage name (`clicks` on the embedded log, `clickbus.clicks` on Kafka)."""
    return Topic(name.rsplit(".", 1)[-1])


_CLICK_FIELDS = frozenset(f.name for f in fields(ClickRecord))
_IMPRESSION_FIELDS = frozenset(f.name for f in fields(ImpressionRecord))
_IMPRESSION_KIND = ImpressionRecord.KIND.encode()


def decode(entry: Entry) -> Record | None:
    """The click or impression in `entry`, or None when it cannot be read."""
    kind = entry.header(HEADER_KIND)
    is_impression = kind == _IMPRESSION_KIND if kind else short_topic(entry.topic) is Topic.IMPRESSIONS
    # `from_json` of records.py, with the field names computed once: this runs for every click
    cls, known = (ImpressionRecord, _IMPRESSION_FIELDS) if is_impression else (ClickRecord, _CLICK_FIELDS)
    try:
        data = orjson.loads(entry.value)
        return cls(**{k: v for k, v in data.items() if k in known})
    except (orjson.JSONDecodeError, TypeError, AttributeError):
        return None


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


async def _done() -> None:
    return None


@dataclass(slots=True)
class IntakeHandler:
    """Dedup, invalid traffic and hand-off for new clicks and impressions."""

    log: Log
    settings: NotifierConfig
    dispatcher: Dispatcher
    recorder: Recorder
    is_crawler: Callable[[str], bool]
    windows: dict[TopicPartition, DedupWindow | None]

    def _window_for(self, tp: TopicPartition) -> DedupWindow | None:
        if short_topic(tp[0]) is Topic.IMPRESSIONS:
            on, seconds = self.settings.dedup_impressions, self.settings.impression_window_s
        else:
            on, seconds = True, self.settings.click_window_s
        return DedupWindow(int(seconds * 1000)) if on else None

    async def prepare(self, firsts: Mapping[TopicPartition, int]) -> None:
        """Rebuild the dedup windows of newly assigned partitions from their records before `firsts`."""
        windows = {tp: window for tp in firsts if (window := self._fresh_window(tp)) is not None}
        for topic in {tp[0] for tp in windows}:
            todo = {tp[1]: firsts[tp] for tp in windows if tp[0] == topic}
            await self._replay(topic, todo, {p: windows[(topic, p)] for p in todo})
        for tp, window in windows.items():
            logger.info("dedup window of %s[%d] rebuilt: %d keys", tp[0], tp[1], len(window))

    def _fresh_window(self, tp: TopicPartition) -> DedupWindow | None:
        window = self.windows[tp] = self._window_for(tp)
        return window

    async def _replay(self, topic: str, before: dict[int, int], windows: dict[int, DedupWindow]) -> None:
        """Feed each partition's records from the last window, up to its first unprocessed offset."""
        since = _now_ms() - max(w.window_ms for w in windows.values())
        pending = {p for p, first in before.items() if first > 0}
        if not pending:
            return
        entries = self.log.read(short_topic(topic), from_beginning=True, follow=False)
        try:
            async for entry in entries:
                p = entry.partition
                if p not in pending:
                    continue
                if entry.offset >= before[p]:
                    pending.discard(p)
                    if not pending:
                        return
                    continue
                if entry.timestamp_ms >= since and (record := decode(entry)) is not None:
                    key = record.dedup_key()
                    verdict(record, key, entry.timestamp_ms, is_crawler=self.is_crawler, window=windows[p])
        finally:
            if (aclose := getattr(entries, "aclose", None)) is not None:  # release the reader now, not at GC
                await aclose()

    def accept(self, entry: Entry) -> Awaitable[None]:
        record = decode(entry)
        if record is None:
            outcome = DeliveryOutcome(entry.key.decode("utf-8", "replace"), 0, 0, Outcome.MALFORMED)
            return self.recorder.outcome(outcome)
        tp = (entry.topic, entry.partition)
        if tp not in self.windows:  # not prepared: the rebuild failed, or no assignment was reported
            self.windows[tp] = self._window_for(tp)
        window = self.windows[tp]
        # The key comes from the record, not the log key, so whatever wrote the record the rule is this one.
        # On Kafka a key always lands on one partition; the embedded log has a partition per writing process,
        # so a duplicate may sit in another partition's window: check them too (a no-op on Kafka).
        also = [w for (topic, p), w in self.windows.items() if topic == tp[0] and p != tp[1] and w is not None]
        reason = verdict(
            record, record.dedup_key(), entry.timestamp_ms, is_crawler=self.is_crawler, window=window, also=also
        )
        self.recorder.metrics.verdict(short_topic(tp[0]), reason)
        if isinstance(record, ClickRecord):
            self.recorder.recent.click(record, reason)
        if reason is not None:
            invalid = DeliveryOutcome(
                record.record_id(), record.member_id, 0, Outcome.INVALID, reason=reason, test=record.test
            )
            return self.recorder.outcome(invalid)
        if isinstance(record, ImpressionRecord):
            return _done()
        now = _now_ms()
        return self.dispatcher.deliver(Parked(record, 0, now, now))


@dataclass(slots=True)
class RetryHandler:
    """Parked deliveries: wait until due, then take the next step."""

    dispatcher: Dispatcher
    recorder: Recorder
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    async def prepare(self, firsts: Mapping[TopicPartition, int]) -> None:
        return None

    def accept(self, entry: Entry) -> Awaitable[None]:
        try:
            parked = Parked.from_json(entry.value)
        except (orjson.JSONDecodeError, TypeError, AttributeError, KeyError):
            return self.recorder.outcome(DeliveryOutcome(entry.key.decode("utf-8", "replace"), 0, 0, Outcome.MALFORMED))
        return self._when_due(parked)

    async def _when_due(self, parked: Parked) -> None:
        depth = self.recorder.retry_depth
        depth.taken(parked.click.click_id)  # here, not in accept: a task cancelled before it ran never waited
        try:
            wait_s = (parked.due_ms - _now_ms()) / 1000
            if wait_s > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), wait_s)
            if self.stopping.is_set():  # left unfinished (not committed): read again after the restart
                raise asyncio.CancelledError
            await self.dispatcher.deliver(parked)  # parking it again counts its new record before this one ends
        finally:
            depth.finished()
