"""A notifier group rebalancing on Kafka: a partition a member keeps is read again, and judged afresh."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from clickbus.log import open_log
from clickbus.log.port import Topic
from clickbus.notifier import Notifier
from clickbus.notifier.outcomes import Outcome
from tests.notifier.factory import append, click
from tests.support.bidder import BidderStub
from tests.support.configs import kafka_config, notifier_config
from tests.support.kafka_broker import TansuBroker
from tests.support.records import records
from tests.support.waiting import eventually

CLICKS = 30
HANGING_S = 30.0  # the first deliveries stay in flight through the whole rebalance


async def test_a_member_keeping_a_partition_does_not_judge_its_own_clicks_duplicates(
    kafka_broker: TansuBroker, tmp_path: Path
) -> None:
    """Before the fix, the kept partition's clicks in flight were read again and judged duplicates of themselves:
    those verdicts finished their offsets, so the group committed past deliveries still in flight (lost on a crash).
    """
    stub = BidderStub(script=["hang"] * CLICKS)  # then 200
    await stub.start()
    members = {13: {"click_uri": stub.url, "timeout_s": HANGING_S}}
    config = dataclasses.replace(
        notifier_config(tmp_path, members, dedup_impressions=False),
        log=kafka_config(tmp_path, kafka_broker.bootstrap).log,
    )
    log = open_log(config)
    await log.start()
    first, second = Notifier(config, log), Notifier(config, log)
    try:
        clicks = [click() for _ in range(CLICKS)]
        await append(log, *clicks)
        await first.start()
        await eventually(lambda: len(stub.received) >= CLICKS)  # every click in flight, none finished
        await second.start()  # the group rebalances: some partitions move to it, the first member keeps the others
        await eventually(lambda: first.counts.total() + second.counts.total() >= CLICKS, timeout_s=20.0)
        assert first.counts.total() and second.counts[Outcome.DELIVERED], "each member held a partition"
        assert first.counts[Outcome.INVALID] == 0
        outcomes = await records(log, Topic.DELIVERIES)
        assert {o["click_id"] for o in outcomes if o["outcome"] == Outcome.DELIVERED} == {c.click_id for c in clicks}
    finally:
        await stub.stop()  # ends the hanging deliveries first, so that the members stop promptly
        await first.stop(5.0)
        await second.stop(5.0)
        await log.stop(5.0)
