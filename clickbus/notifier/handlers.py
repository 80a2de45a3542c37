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
from dataclasses import dataclass, field

import orjson

from clickbus.config import NotifierConfig
from clickbus.log.port import HEADER_KIND, Entry, Log, Topic, TopicPartition
from clickbus.notifier.activity import ActivityWindow
from clickbus.notifier.dedup import DedupWindow
from clickbus.notifier.dispatch import Dispatcher
from clickbus.notifier.ivt import verdict
from clickbus.notifier.outcomes import DeliveryOutcome, Outcome, Recorder
from clickbus.notifier.retry import Parked
from clickbus.records import ClickRecord, ImpressionRecord, dimensions

logger = logging.getLogger(__name__)

_KEY_FIELD = b'"idempotency_key":'
REPEAT_WINDOW_S = 3600.0  # how long a retry record's key is remembered: a copy arriving later starts a second chain

Record = ClickRecord | ImpressionRecord


def short_topic(name: str) -> Topic:
    """The `Topic` of a storage name (`clicks` on the embedded log, `clickbus.clicks` on Kafka)."""
    return Topic(name.rsplit(".", 1)[-1])


_IMPRESSION_KIND = ImpressionRecord.KIND.encode()


def decode(entry: Entry) -> Record | None:
    """The click or impression in `entry`, or None when it cannot be read."""
    kind = None
    for name, value in entry.headers:  # `Entry.header`, without a generator per record
        if name == HEADER_KIND:
            kind = value
            break
    is_impression = kind == _IMPRESSION_KIND if kind else short_topic(entry.topic) is Topic.IMPRESSIONS
    cls: type[Record] = ImpressionRecord if is_impression else ClickRecord
    try:
        data = orjson.loads(entry.value)
        return cls.from_mapping(data)
    except (orjson.JSONDecodeError, TypeError, AttributeError):
        return None


async def replay_windows(
    log: Log,
    topic: str,
    before: Mapping[int, int],
    windows: Mapping[int, DedupWindow],
    feed: Callable[[Entry, DedupWindow], None],
) -> None:
    """`feed` each partition's records of the last window, up to its first unprocessed offset (`before`)."""
    since = _now_ms() - max(w.window_ms for w in windows.values())
    pending = {p for p, first in before.items() if first > 0}
    if not pending:
        return
    entries = log.read(short_topic(topic), from_beginning=True, follow=False)
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
            if entry.timestamp_ms >= since:
                feed(entry, windows[p])
    finally:
        if (aclose := getattr(entries, "aclose", None)) is not None:  # release the reader now, not at GC
            await aclose()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


async def _done() -> None:
    return None


async def _both(first: asyncio.Future[None], second: Awaitable[None]) -> None:
    """The delivery step `second`, then the verdict round `first`: the record is finished when both are.

    `first` is the recorder's round, shared with the clicks judged beside this one, and already running:
    shielded, so that cancelling this click leaves theirs to be written (and awaited last, it is mostly
    done by then: no future of its own). A coroutine step runs here, in this click's task, rather than in
    a task of its own beside a gather; a step that is a round is shielded like `first`.
    """
    await (second if asyncio.iscoroutine(second) else asyncio.shield(second))
    await asyncio.shield(first)


@dataclass(slots=True)
class IntakeHandler:
    """Dedup, invalid traffic and hand-off for new clicks and impressions."""

    log: Log
    settings: NotifierConfig
    dispatcher: Dispatcher
    recorder: Recorder
    is_crawler: Callable[[str], bool]
    windows: dict[TopicPartition, DedupWindow | None]
    activity: dict[TopicPartition, ActivityWindow | None] = field(default_factory=dict)
    # per partition, the windows of the topic's other partitions held here (see `accept`): worked out once
    # per assignment rather than for every record; emptied whenever a window is made
    peers: dict[TopicPartition, tuple[list[DedupWindow], list[ActivityWindow]]] = field(default_factory=dict)

    def _activity_for(self, tp: TopicPartition) -> ActivityWindow | None:
        if short_topic(tp[0]) is Topic.IMPRESSIONS:
            return None
        settings = self.settings
        window_ms = int(settings.click_window_s * 1000)
        return ActivityWindow(
            window_ms, max_agents=settings.activity_max_agents, max_clicks=settings.activity_max_clicks
        )

    def _peers(self, tp: TopicPartition) -> tuple[list[DedupWindow], list[ActivityWindow]]:
        """The dedup and activity windows of the topic's other partitions held here."""
        peers = self.peers.get(tp)
        if peers is None:
            topic, partition = tp
            dedup = [w for (t, p), w in self.windows.items() if t == topic and p != partition and w is not None]
            active = [w for (t, p), w in self.activity.items() if t == topic and p != partition and w is not None]
            peers = self.peers[tp] = (dedup, active)
        return peers

    def _window_for(self, tp: TopicPartition) -> DedupWindow | None:
        if short_topic(tp[0]) is Topic.IMPRESSIONS:
            on, seconds = self.settings.dedup_impressions, self.settings.impression_window_s
        else:
            on, seconds = True, self.settings.click_window_s
        return DedupWindow(int(seconds * 1000)) if on else None

    async def prepare(self, firsts: Mapping[TopicPartition, int]) -> None:
        """Rebuild the dedup and activity windows of newly assigned partitions from their records before `firsts`."""
        windows = {tp: window for tp in firsts if (window := self._fresh_window(tp)) is not None}
        for topic in {tp[0] for tp in windows}:
            todo = {tp[1]: firsts[tp] for tp in windows if tp[0] == topic}
            await self._replay(topic, todo, {p: windows[(topic, p)] for p in todo})
        for tp, window in windows.items():
            activity = self.activity.get(tp)
            keys = f", activity window {len(activity)} keys" if activity is not None else ""
            logger.info("dedup window of %s[%d] rebuilt: %d keys%s", tp[0], tp[1], len(window), keys)

    def _fresh_window(self, tp: TopicPartition) -> DedupWindow | None:
        self.peers.clear()
        self.activity[tp] = self._activity_for(tp)
        window = self.windows[tp] = self._window_for(tp)
        return window

    async def _replay(self, topic: str, before: dict[int, int], windows: dict[int, DedupWindow]) -> None:
        """Feed each partition's records from the last window, up to its first unprocessed offset."""
        activity = {p: self.activity.get((topic, p)) for p in before}

        def feed(entry: Entry, window: DedupWindow) -> None:
            if (record := decode(entry)) is None:
                return
            p = entry.partition
            verdict(
                record,
                record.dedup_key(),
                entry.timestamp_ms,
                is_crawler=self.is_crawler,
                window=window,
                activity=activity[p],
                activity_also=[w for q, w in activity.items() if q != p and w is not None],
            )

        await replay_windows(self.log, topic, before, windows, feed)

    def accept(self, entry: Entry) -> Awaitable[None]:
        record = decode(entry)
        if record is None:
            outcome = DeliveryOutcome(entry.key.decode("utf-8", "replace"), 0, 0, Outcome.MALFORMED)
            return self.recorder.outcome(outcome)
        tp = (entry.topic, entry.partition)
        if tp not in self.windows:  # not prepared: the rebuild failed, or no assignment was reported
            self.peers.clear()
            self.windows[tp] = self._window_for(tp)
            self.activity[tp] = self._activity_for(tp)
        window = self.windows[tp]
        # The key comes from the record, not the log key, so whatever wrote the record the rule is this one.
        # On Kafka a key always lands on one partition; the embedded log has a partition per writing process,
        # so a duplicate may sit in another partition's window: check them too (a no-op on Kafka).
        also, activity_also = self._peers(tp)
        reason = verdict(
            record,
            record.dedup_key(),
            entry.timestamp_ms,
            is_crawler=self.is_crawler,
            window=window,
            also=also,
            activity=self.activity.get(tp),
            activity_also=activity_also,
        )
        self.recorder.metrics.verdict(record.KIND, reason)  # the one judgement: what `clickbus status` shows
        # The verdict, valid or not, is one record with the dimensions reports count it by.
        judged = Outcome.VALID if reason is None else Outcome.INVALID
        dims = dimensions(record)
        verdict_record = DeliveryOutcome(
            record.record_id(), record.member_id, 0, judged, reason=reason, test=record.test, dims=dims
        )
        if isinstance(record, ClickRecord):
            self.recorder.recent.click(record, reason)
        if reason is not None:
            return self.recorder.outcome(verdict_record)
        if isinstance(record, ImpressionRecord):
            return self.recorder.verdict(verdict_record)
        now = _now_ms()
        judged_valid = self.recorder.verdict(verdict_record)
        step = self.dispatcher.deliver(Parked(record, 0, now, now))
        return judged_valid if step is judged_valid else _both(judged_valid, step)  # no attempt: one round for both


@dataclass(slots=True)
class RetryHandler:
    """Parked deliveries: wait until due, then take the next step; one chain per click.

    A parked record can reach `Topic.RETRY` twice (the Kafka spool ships a copy of an append
    whose first send arrived late; a click processed again after a crash is parked again for
    the same step). Each copy would start a retry chain of its own: the click delivered and
    dead-lettered twice. So a record whose `idempotency_key` was already taken is dropped,
    within `REPEAT_WINDOW_S`, over every partition of the topic. As for the intake's dedup
    windows, each assigned partition's window is rebuilt from the records before its first
    unprocessed offset: a record read again after a rebalance is then taken again, and a copy
    of a record processed before the restart is still known.
    """

    dispatcher: Dispatcher
    recorder: Recorder
    log: Log | None = None  # to rebuild windows; None: start empty
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    windows: dict[TopicPartition, DedupWindow] = field(default_factory=dict)
    repeats: int = 0  # copies dropped since start

    async def prepare(self, firsts: Mapping[TopicPartition, int]) -> None:
        fresh = {tp: self._fresh_window(tp) for tp in firsts}
        if self.log is None:
            return
        for topic in {tp[0] for tp in fresh}:
            before = {tp[1]: firsts[tp] for tp in fresh if tp[0] == topic}
            windows = {p: fresh[(topic, p)] for p in before}
            await replay_windows(self.log, topic, before, windows, _remember)

    def _fresh_window(self, tp: TopicPartition) -> DedupWindow:
        window = self.windows[tp] = DedupWindow(int(REPEAT_WINDOW_S * 1000))
        return window

    def accept(self, entry: Entry) -> Awaitable[None]:
        try:
            parked = Parked.from_json(entry.value)
        except (orjson.JSONDecodeError, TypeError, AttributeError, KeyError):
            return self.recorder.outcome(DeliveryOutcome(entry.key.decode("utf-8", "replace"), 0, 0, Outcome.MALFORMED))
        if _KEY_FIELD in entry.value and self._repeated(entry, parked):  # records from before keys stand alone
            self.repeats += 1
            logger.info("retry record %s read again (a copy): dropped", parked.idempotency_key)
            return _done()
        return self._when_due(parked)

    def _repeated(self, entry: Entry, parked: Parked) -> bool:
        tp = (entry.topic, entry.partition)
        window = self.windows.get(tp)
        if window is None:  # not prepared: the rebuild failed, or no assignment was reported
            window = self._fresh_window(tp)
        also = [w for (topic, p), w in self.windows.items() if topic == tp[0] and p != tp[1]]
        return window.check_and_add(parked.idempotency_key.encode(), entry.timestamp_ms, also)

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
            step = self.dispatcher.deliver(parked)  # parking it again counts its new record before this one ends
            await (step if asyncio.iscoroutine(step) else asyncio.shield(step))  # a round is shared: see `_both`
        finally:
            depth.finished()


def _remember(entry: Entry, window: DedupWindow) -> None:
    """Note the key of a retry record processed before the group's position."""
    try:
        key = orjson.loads(entry.value).get("idempotency_key")
    except (orjson.JSONDecodeError, AttributeError):
        return
    if isinstance(key, str):
        window.check_and_add(key.encode(), entry.timestamp_ms)
