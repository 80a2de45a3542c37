"""What the notifier's per-click work is made of: shared timers and shared append rounds, not one of each per click."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from clickbus.log.embedded import EmbeddedLog
from clickbus.log.metered import MeteredLog
from clickbus.log.port import Topic
from clickbus.metrics import default_metrics
from clickbus.notifier.bidders import Bidder
from clickbus.notifier.delivery import Verdict
from clickbus.notifier.handlers import _both
from clickbus.notifier.outcomes import DeliveryOutcome, Outcome, Recorder
from tests.notifier import factory as f
from tests.notifier.conftest import StartStub
from tests.support.configs import notifier_config
from tests.support.waiting import eventually


async def test_clicks_waiting_for_a_slot_share_one_timer(
    stubs: StartStub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # one slot and an answer every 0.1 s: 29 of 30 clicks wait. A timeout per waiting click armed 29 timers;
    # the bidder's one timer, and aiohttp's for the request in flight, are all that may be armed now
    stub = await stubs(delay_s=0.1)
    config = notifier_config(tmp_path, {13: {"click_uri": stub.url, "concurrency": 1}}, slot_wait_s=5.0)
    bidder = Bidder(config.members[13], config.notifier)
    await bidder.start()
    loop = asyncio.get_running_loop()
    armed = 0
    call_at = loop.call_at

    def counting(when: float, callback: Any, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        nonlocal armed
        armed += 1
        return call_at(when, callback, *args, **kwargs)

    try:
        monkeypatch.setattr(loop, "call_at", counting)
        attempts = [asyncio.ensure_future(bidder.attempt(f.click(13))) for _ in range(30)]
        await eventually(lambda: bidder.load == 30 or None)
        await eventually(lambda: stub.received or None)  # the first request is in flight, its timer armed
        waiting_armed = armed
        monkeypatch.undo()
        results = await asyncio.gather(*attempts)
    finally:
        monkeypatch.undo()
        await bidder.close()
    assert waiting_armed < 10  # waits of the test itself (eventually) arm a few too
    assert [r.verdict for r in results] == [Verdict.DELIVERED] * 30  # waiting on an answering bidder, none gave up


@pytest.fixture
async def logged(tmp_path: Path) -> AsyncIterator[tuple[MeteredLog, Recorder]]:
    """A recorder on a real embedded log."""
    log = MeteredLog(EmbeddedLog(tmp_path / "log"), default_metrics())
    await log.start()
    try:
        yield log, Recorder(log, default_metrics())
    finally:
        await log.stop(5.0)


async def test_outcomes_decided_together_are_appended_as_one_round(logged: tuple[MeteredLog, Recorder]) -> None:
    log, recorder = logged
    clicks = [f.click(13) for _ in range(50)]
    waits = [recorder.outcome(DeliveryOutcome(c.click_id, 13, 0, Outcome.INVALID, reason="bot")) for c in clicks]
    assert len({id(w) for w in waits}) == 1  # one round (one task, one append per topic), not one per click
    assert recorder.counts["invalid"] == 0  # counted only once durable
    await asyncio.gather(*waits)
    assert recorder.counts["invalid"] == 50
    written = [e.key.decode() async for e in log.read(Topic.DELIVERIES, from_beginning=True, follow=False)]
    assert written == [c.click_id for c in clicks]  # each once, in the order decided
    later = recorder.outcome(DeliveryOutcome(clicks[0].click_id, 13, 1, Outcome.DELIVERED))
    assert later is not waits[0]  # a round closes once it is written: what comes after is the next one
    await later


async def test_a_click_cancelled_while_its_round_is_written_leaves_the_round_to_the_others(
    logged: tuple[MeteredLog, Recorder],
) -> None:
    """A stop's drain cancels clicks one by one: the verdict round they share must still be written for the rest."""
    log, recorder = logged
    clicks = [f.click(13) for _ in range(3)]
    shared = [recorder.verdict(DeliveryOutcome(c.click_id, 13, 0, Outcome.VALID)) for c in clicks]
    assert len({id(r) for r in shared}) == 1

    async def delivered() -> None:  # the delivery step, done at once: each click then waits for the round
        return None

    works = [asyncio.ensure_future(_both(r, delivered())) for r in shared]
    await asyncio.sleep(0)  # each click now awaits the round, which the log has not synced yet
    assert not shared[0].done()
    works[0].cancel()
    await asyncio.gather(*works[1:])  # not cancelled with it
    assert shared[0].done() and not shared[0].cancelled()
    written = [e.key.decode() async for e in log.read(Topic.VERDICTS, from_beginning=True, follow=False)]
    assert written == [c.click_id for c in clicks]
    assert works[0].cancelled()
