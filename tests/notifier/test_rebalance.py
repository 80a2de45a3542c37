"""A notifier group rebalancing on Kafka: every partition of a new assignment is read again from the group's
commit, kept ones included, so its dedup window is rebuilt and its clicks are judged afresh, never as duplicates
of themselves."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from clickbus.log import open_log
from clickbus.log.port import Entry, Log, Topic, TopicPartition
from clickbus.notifier import Notifier
from clickbus.notifier.consumer import Handler
from clickbus.notifier.outcomes import Outcome
from tests.notifier.factory import append, click
from tests.support.bidder import BidderStub
from tests.support.configs import kafka_config, notifier_config
from tests.support.kafka_broker import TansuBroker
from tests.support.records import records
from tests.support.waiting import eventually

CLICKS = 30
HANGING_S = 30.0  # longer than the test: a hanging delivery stays in flight through the rebalance


@asynccontextmanager
async def two_members(
    broker: TansuBroker, tmp_path: Path, stub: BidderStub
) -> AsyncIterator[tuple[Log, Notifier, Notifier]]:
    """A Kafka log holding `CLICKS` distinct clicks, and two notifiers of one group on it (not started)."""
    members = {13: {"click_uri": stub.url, "timeout_s": HANGING_S}}
    config = dataclasses.replace(
        notifier_config(tmp_path, members, dedup_impressions=False), log=kafka_config(tmp_path, broker.bootstrap).log
    )
    log = open_log(config)
    await log.start()
    first, second = Notifier(config, log), Notifier(config, log)
    try:
        await append(log, *(click() for _ in range(CLICKS)))
        yield log, first, second
    finally:
        await stub.stop()  # ends hanging deliveries first, so that the members stop promptly
        await first.stop(5.0)
        await second.stop(5.0)
        await log.stop(5.0)


async def delivered_ids(log: Log) -> set[str]:
    return {o["click_id"] for o in await records(log, Topic.DELIVERIES) if o["outcome"] == Outcome.DELIVERED}


async def test_a_member_keeping_a_partition_does_not_judge_its_own_clicks_duplicates(
    kafka_broker: TansuBroker, tmp_path: Path
) -> None:
    """Before the fix, the kept partition's clicks in flight were read again and judged duplicates of themselves:
    those verdicts finished their offsets, so the group committed past deliveries still in flight (lost on a crash).
    """
    stub = BidderStub(script=["hang"] * CLICKS)  # then 200
    await stub.start()
    async with two_members(kafka_broker, tmp_path, stub) as (log, first, second):
        await first.start()
        await eventually(lambda: len(stub.received) >= CLICKS)  # every click in flight, none finished
        await second.start()  # the group rebalances: some partitions move to it, the first member keeps the others
        await eventually(lambda: first.counts.total() + second.counts.total() >= CLICKS, timeout_s=20.0)
        assert first.counts.total() and second.counts[Outcome.DELIVERED], "each member held a partition"
        assert first.counts[Outcome.INVALID] == 0
        assert len(await delivered_ids(log)) == CLICKS


class GatedPrepare:
    """A member's handler whose first window rebuild waits for `gate`: a rebuild that outlasts a rebalance."""

    def __init__(self, inner: Handler) -> None:
        self.inner = inner
        self.gate = asyncio.Event()
        self.held = False

    async def prepare(self, firsts: Mapping[TopicPartition, int]) -> None:
        if not self.held:
            self.held = True
            await self.gate.wait()
        await self.inner.prepare(firsts)

    def accept(self, entry: Entry) -> Awaitable[None]:
        return self.inner.accept(entry)


async def test_a_rebalance_during_a_window_rebuild_has_the_window_rebuilt_again(
    kafka_broker: TansuBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Before the fix, the rebuild begun under the old assignment counted as done for the new one: the records it
    had fetched were accepted, and the same records, read again from the commit, were judged their duplicates.
    That batch also held records of partitions since revoked, and every commit naming one was refused."""
    stub = BidderStub()
    await stub.start()
    async with two_members(kafka_broker, tmp_path, stub) as (log, first, second):
        gated = GatedPrepare(first.intake.handler)
        first.intake.handler = gated
        await first.start()
        await eventually(lambda: gated.held)  # the first member fetched every click and is rebuilding its windows
        await second.start()
        await eventually(lambda: 0 < len(first.intake.assigned) < 3)  # reassigned meanwhile: it keeps a share
        gated.gate.set()
        entries = [e async for e in log.read(Topic.CLICKS, from_beginning=True, follow=False)]
        kept = sum(1 for e in entries if (e.topic, e.partition) in first.intake.assigned)
        await eventually(lambda: first.counts.total() >= 2 * kept, timeout_s=20.0)  # its share, read twice
        assert first.counts[Outcome.INVALID] == 0
        assert len(await delivered_ids(log)) == CLICKS
        assert [r.getMessage() for r in caplog.records if "commit failed" in r.getMessage()] == []
