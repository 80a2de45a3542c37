"""The rollup on a real embedded log: every verdict and outcome counted once, whatever is read twice."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, cast

import orjson

from clickbus.ids import uuid7
from clickbus.log import EmbeddedLog, open_log
from clickbus.log.port import Topic, TopicPartition
from clickbus.reports.port import Batch, Query, Store
from clickbus.reports.rollup import Rollup
from clickbus.reports.schema import COUNTERS, DIMENSIONS, bucket
from clickbus.reports.service import Reporter
from tests.support.configs import build_config
from tests.support.waiting import eventually_async

GROUP = "clickbus-reports"
DIMS = {"kind": "click", "publisher": 7, "campaign": 3, "creative": 5, "placement": "top", "country": "FR"}
DIMS |= {"device": "mobile", "source": "redirect"}


def outcome(click_id: str, outcome: str, **fields: object) -> bytes:
    record = {"click_id": click_id, "member_id": 13, "attempt": 0, "outcome": outcome, "test": False}
    return orjson.dumps(record | {"dims": DIMS, "ts_ms": 0} | fields)


async def totals(store: Store) -> dict[str, int]:
    rows = [row async for row in store.query(Query(0, 2**40, ()))]
    start = 2 + len(DIMENSIONS)
    return {name: sum(int(row[start + i] or 0) for row in rows) for i, name in enumerate(COUNTERS)}


async def counted(store: Store, want: dict[str, int]) -> bool:
    return {k: v for k, v in (await totals(store)).items() if v} == want


async def test_each_record_counts_once_across_duplicates_and_restarts(tmp_path: Path, store: Store) -> None:
    log = open_log(build_config(tmp_path))
    assert isinstance(log, EmbeddedLog)
    await log.start()
    a, b = uuid7(), uuid7()
    impression = orjson.dumps(orjson.loads(outcome(uuid7(), "valid")) | {"dims": DIMS | {"kind": "impression"}})
    written = [
        (Topic.VERDICTS, outcome(a, "valid")),
        (Topic.VERDICTS, outcome(a, "valid")),  # the notifier re-read the click after a crash: one verdict
        (Topic.VERDICTS, impression),
        (Topic.DELIVERIES, outcome(b, "invalid", reason="bot")),
        (Topic.DELIVERIES, outcome(a, "retry", attempt=1)),
        (Topic.DELIVERIES, outcome(a, "delivered", attempt=2, ts_ms=int(a[:8] + a[9:13], 16) + 40)),
        (Topic.DELIVERIES, outcome(a, "delivered", attempt=2)),  # written twice (a spooled outcome, on Kafka)
        (Topic.DELIVERIES, outcome(a, "parked", attempt=2)),  # counts for nothing
        (Topic.DELIVERIES, b"not json"),
    ]
    for topic, value in written:
        await log.append(topic, b"k", value)
    want = {"impressions": 1, "clicks": 2, "delivered": 1, "retried": 1}
    rollup = Rollup(log, store, GROUP, fetch_wait_s=0.05)
    await rollup.start()
    try:
        await eventually_async(lambda: counted(store, want))
    finally:
        await rollup.stop(5)
    # Another member whose log offsets lag the store's (as after a kill between the two commits): nothing again.
    await log.append(Topic.DELIVERIES, b"k", outcome(uuid7(), "dead", attempt=3))
    again = Rollup(log, store, GROUP, fetch_wait_s=0.05, log_group="a-fresh-log-group")
    await again.start()
    try:
        await eventually_async(lambda: counted(store, want | {"dead_lettered": 1}))
        assert again.counted == 1
    finally:
        await again.stop(5)
        await log.stop(5)
    rows = [row async for row in store.query(Query(0, 2**40, ("creative", "device", "country"), "hour"))]
    assert {(row[4], row[7], row[6], row[10]) for row in rows} == {(5, "mobile", "FR", ""), (5, "mobile", "FR", "bot")}
    (valid,) = [row for row in rows if row[10] == ""]
    assert list(valid[-38:])[bucket(40)] == 1


async def test_a_click_parked_again_at_the_same_attempt_counts_again_and_copies_do_not(
    tmp_path: Path, store: Store
) -> None:
    """Records are told apart by their step, not their attempt: a breaker-open park keeps the attempt."""
    log = open_log(build_config(tmp_path))
    await log.start()
    c = uuid7()
    written = [
        outcome(c, "retry", attempt=1, step=1),
        outcome(c, "retry", attempt=1, step=2),  # parked again while the breaker was open: same attempt, new step
        outcome(c, "retry", attempt=1, step=2),  # a copy of it (the Kafka spool shipped it twice)
        outcome(c, "dead", attempt=1, step=3),
        outcome(c, "delivered", attempt=0, step=4),  # `dlq replay` starts again at attempt 0
    ]
    for value in written:
        await log.append(Topic.DELIVERIES, b"k", value)
    rollup = Rollup(log, store, GROUP, fetch_wait_s=0.05)
    await rollup.start()
    try:
        await eventually_async(lambda: counted(store, {"retried": 2, "dead_lettered": 1, "delivered": 1}))
    finally:
        await rollup.stop(5)
        await log.stop(5)


async def test_a_late_records_copy_is_known_after_upkeep_however_old_its_click(tmp_path: Path, store: Store) -> None:
    """Keys are kept by when their record was logged, not by their click's time: a dead letter replayed three
    days after its click, spooled twice around an upkeep, still counts once."""
    config = build_config(tmp_path)
    log = open_log(config)
    await log.start()
    old = uuid7(time.time_ns() - 3 * 86400 * 10**9)
    replayed = outcome(old, "delivered", attempt=0, step=7)
    await log.append(Topic.DELIVERIES, b"k", replayed)
    rollup = Rollup(log, store, GROUP, fetch_wait_s=0.05, dedup_window_s=config.reports.dedup_window_s)
    await rollup.start()
    try:
        await eventually_async(lambda: counted(store, {"delivered": 1}))
        await Reporter(config, log, store).maintain()
        await log.append(Topic.DELIVERIES, b"k", replayed)  # the spooled copy, shipped after the upkeep
        await log.append(Topic.DELIVERIES, b"k", outcome(uuid7(), "dead", step=3))  # to know the copy was read
        await eventually_async(lambda: counted(store, {"delivered": 1, "dead_lettered": 1}))
    finally:
        await rollup.stop(5)
        await log.stop(5)


class RacedStore:
    """The store, where another member counts `batch` just after this member first reads the positions."""

    def __init__(self, store: Store, batch: Batch) -> None:
        self.store, self.batch, self.raced = store, batch, False

    async def positions(self, group: str) -> dict[TopicPartition, int]:
        read = await self.store.positions(group)
        if not self.raced:
            self.raced = True
            await self.store.apply(self.batch)  # the other member held the partition a moment and counted five
        return read

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


async def test_a_fenced_batch_is_counted_again_past_the_positions_another_member_reached(
    tmp_path: Path, store: Store
) -> None:
    """A rebalance mid-batch: another member counted part of what this one had fetched (and moved on past).

    Before the fix the fenced batch was dropped while the consumer went on after it, so what lay between
    the other member's position and the next fetch was never counted (the report stayed short for good).
    """
    log = open_log(build_config(tmp_path))
    await log.start()
    for _ in range(10):
        await log.append(Topic.VERDICTS, b"k", outcome(uuid7(), "valid"))
    other = Rollup(log, store, GROUP, fetch_wait_s=0.05, log_group="the-other-member")
    entries = [e async for e in log.read(Topic.VERDICTS, from_beginning=True, follow=False)]
    first_five = other.batch(entries[:5])
    assert first_five is not None
    raced = RacedStore(store, first_five)
    this = Rollup(log, cast(Store, raced), GROUP, fetch_wait_s=0.05)
    await this.start()
    try:
        await eventually_async(lambda: counted(store, {"clicks": 10}))  # each once: five by each member
        assert raced.raced
    finally:
        await this.stop(5)
        await log.stop(5)
