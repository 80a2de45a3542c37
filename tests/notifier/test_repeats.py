"""A record written twice is one record: one retry chain per click, one dead letter, one replay, one count.

The Kafka spool writes a record twice when an append falls back after its first
send had in fact reached the broker (both copies are shipped; see the README's
"At least once, never lost"). The copies here are appended by hand, byte for
byte, on both backends; `tests/chaos/scenarios/spooled_outcomes.py` makes the
spool write them, with a real broker and a hanging bidder.
"""

from __future__ import annotations

import time
from pathlib import Path

import orjson

from clickbus.log.port import Log, Topic
from clickbus.metrics import create_metrics
from clickbus.notifier import Notifier, dlq
from clickbus.notifier.outcomes import DeliveryOutcome, Outcome
from clickbus.notifier.retry import Parked
from tests.notifier import factory as f
from tests.notifier.conftest import StartStub
from tests.support.configs import notifier_config
from tests.support.records import records
from tests.support.waiting import eventually, eventually_async

# the first delivery waits for the notifier to start: on Kafka a consumer group's join, which took over 10 s once
# under a full suite on two busy cores
START_S = 30.0


def _parked(member_id: int = 13) -> Parked:
    """A click parked after its first step, due now: what a retry record holds."""
    now = time.time_ns() // 1_000_000
    return Parked(f.click(member_id), 1, now, now, 500, "HTTP 500", "retry").next_step()


async def _twice(log: Log, topic: Topic, parked: Parked) -> None:
    raw = parked.to_json()
    for _ in range(2):  # the same bytes twice, as the spool ships a copy of a send that had landed
        await log.append(topic, parked.click.click_id.encode(), raw)


def test_every_record_carries_click_id_attempt_and_its_idempotency_key() -> None:
    parked = _parked()
    click_id = parked.click.click_id
    retry = orjson.loads(parked.to_json())
    assert (retry["click_id"], retry["attempt"], retry["step"]) == (click_id, 1, 1)
    assert retry["idempotency_key"] == f"{click_id}/1"
    assert Parked.from_json(parked.to_json()) == parked
    outcome = orjson.loads(DeliveryOutcome(click_id, 13, 2, Outcome.RETRY, step=3).to_json())
    assert (outcome["click_id"], outcome["attempt"], outcome["idempotency_key"]) == (click_id, 2, f"{click_id}/3")
    replayed = parked.replayed(0)
    assert (replayed.attempt, replayed.idempotency_key) == (0, f"{click_id}/2")  # a new step: not a copy


async def test_a_retry_record_written_twice_runs_one_chain(log: Log, stubs: StartStub, tmp_path: Path) -> None:
    stub = await stubs(default="500")
    config = notifier_config(tmp_path, {13: {"click_uri": stub.url}}, retry_horizon_s=0.5, breaker_failures=100)
    parked = _parked()
    metrics = create_metrics()
    notifier = Notifier(config, log, metrics)
    await _twice(log, Topic.RETRY, parked)
    await notifier.start()
    try:
        (dead,) = await eventually_async(lambda: records(log, Topic.DLQ), timeout_s=20)
        await eventually(lambda: notifier.parked.repeats == 1)
    finally:
        await notifier.stop(5.0)
    outcomes = await records(log, Topic.DELIVERIES)
    keys = [o["idempotency_key"] for o in outcomes]
    assert len(keys) == len(set(keys)), "two chains wrote outcomes for the same steps"
    assert dead["attempt"] == len(stub.received) + 1  # the parked click had made one attempt before
    assert [o["outcome"] for o in outcomes].count("dead") == 1
    assert metrics.registry.get_sample_value("clickbus_dead_letters_total", {"member": "13"}) == 1
    assert len(await dlq.pending(log, config.notifier.group)) == 1


async def test_a_copy_read_after_a_restart_is_still_dropped(log: Log, stubs: StartStub, tmp_path: Path) -> None:
    """The first copy was processed and committed before a restart; the second arrives after it."""
    stub = await stubs(default="200")
    config = notifier_config(tmp_path, {13: {"click_uri": stub.url}})
    parked = _parked()
    first = Notifier(config, log)
    await first.start()
    try:
        await log.append(Topic.RETRY, parked.click.click_id.encode(), parked.to_json())
        await eventually(lambda: len(stub.received) == 1, timeout_s=START_S)
        await eventually(lambda: first.retries.tracker.committable() == {} and not first.retries.in_flight())
    finally:
        await first.stop(5.0)
    await log.append(Topic.RETRY, parked.click.click_id.encode(), parked.to_json())
    again = Notifier(config, log)
    await again.start()
    try:
        await eventually(lambda: again.parked.repeats == 1, timeout_s=20)
    finally:
        await again.stop(5.0)
    assert len(stub.received) == 1


async def test_a_dead_letter_written_twice_is_listed_and_replayed_once(
    log: Log, stubs: StartStub, tmp_path: Path
) -> None:
    stub = await stubs(default="200")
    config = notifier_config(tmp_path, {13: {"click_uri": stub.url}})
    letter = _parked()
    await _twice(log, Topic.DLQ, letter)
    listed = await dlq.pending(log, config.notifier.group)
    assert [d.summary()["idempotency_key"] for d in listed] == [letter.idempotency_key]
    assert await dlq.replay(log, config.notifier.group, on_start=lambda n: None, on_each=lambda: None) == 1
    await log.append(Topic.DLQ, letter.click.click_id.encode(), letter.to_json())  # a third copy, after the replay
    assert await dlq.pending(log, config.notifier.group) == []
    assert await dlq.replay(log, config.notifier.group, on_start=lambda n: None, on_each=lambda: None) == 0
    async with _running(Notifier(config, log)):
        await eventually(lambda: len(stub.received) == 1, timeout_s=START_S)
    assert [r["idempotency_key"] for r in await records(log, Topic.RETRY)] == [letter.replayed(0).idempotency_key]


class _running:
    """`async with _running(notifier)`: started, then stopped."""

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier

    async def __aenter__(self) -> Notifier:
        await self.notifier.start()
        return self.notifier

    async def __aexit__(self, *exc: object) -> None:
        await self.notifier.stop(5.0)


async def test_records_written_before_keys_existed_are_never_taken_for_copies(
    log: Log, stubs: StartStub, tmp_path: Path
) -> None:
    stub = await stubs(default="200")
    config = notifier_config(tmp_path, {13: {"click_uri": stub.url}})
    parked = _parked()
    legacy = orjson.loads(parked.to_json())
    for name in ("step", "click_id", "idempotency_key"):
        del legacy[name]
    for _ in range(2):
        await log.append(Topic.RETRY, parked.click.click_id.encode(), orjson.dumps(legacy))
    async with _running(Notifier(config, log)) as notifier:
        await eventually(lambda: len(stub.received) == 2, timeout_s=START_S)
        assert notifier.parked.repeats == 0
