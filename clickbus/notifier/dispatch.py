"""What to do with one valid click: attempt it, park it, or dead-letter it.

A click for a saturated bidder or one whose breaker is open is parked without
an attempt, so a slow or dead bidder never holds up anything else. After an
attempt: 2xx is done; a retryable failure is parked until its next due time,
or dead-lettered once that falls past the horizon; 410 disables the bidder and
dead-letters the click, as does any other refusal.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Mapping
from dataclasses import replace

from clickbus.ids import uuid7_ms
from clickbus.notifier.bidders import BREAKER_OPEN, SATURATED, Bidder
from clickbus.notifier.delivery import Attempt, Verdict
from clickbus.notifier.outcomes import DeliveryOutcome, Outcome, Recorder
from clickbus.notifier.retry import Parked, Schedule
from clickbus.records import dimensions

BIDDER_DISABLED = "bidder_disabled"  # a metric: bidders disabled by a 410 since start
_DEAD_REASON = {Verdict.REJECTED: "rejected", Verdict.GONE: "gone", Verdict.REFUSED: "refused"}

RATE_LIMITED = 429


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Dispatcher:
    """Delivers clicks to their member's bidder, recording every step."""

    def __init__(self, bidders: Mapping[int, Bidder], schedule: Schedule, recorder: Recorder) -> None:
        self.bidders = bidders
        self.schedule = schedule
        self.recorder = recorder
        self.rng = random.Random()

    def deliver(self, parked: Parked) -> Awaitable[None]:
        """Take the click's next step; `parked.attempt` attempts were already made.

        A step without an attempt (no bidder, disabled, saturated, breaker open) is only a record: the
        awaitable is the recorder's round, no coroutine of its own.
        """
        click = parked.click
        bidder = self.bidders.get(click.member_id)
        if bidder is None:
            return self.recorder.outcome(self._outcome(parked, Outcome.NO_BIDDER, error="no member configured"))
        if bidder.disabled is not None:
            return self._dead(parked, "disabled", error=bidder.disabled)
        if bidder.saturated:
            return self._park(parked, self.schedule.base_s, Outcome.PARKED, SATURATED)
        if bidder.breaker.is_open and bidder.breaker.wait_s() > 0:
            return self._park(parked, bidder.breaker.wait_s() + self.schedule.base_s, Outcome.PARKED, BREAKER_OPEN)
        return self._attempt(bidder, parked)

    async def _attempt(self, bidder: Bidder, parked: Parked) -> None:
        result = await bidder.attempt(parked.click)
        if result.verdict is Verdict.HELD:  # saturated, or its breaker opened while the click waited
            self._breaker_shown(bidder)
            why = result.error
            await asyncio.shield(
                self._park(parked, bidder.breaker.wait_s() + self.schedule.base_s, Outcome.PARKED, why)
            )
            return
        parked = parked.attempted()
        if result.status == RATE_LIMITED:
            pass  # alive and asking us to slow down: Retry-After paces it, the breaker is for failures
        elif result.verdict in (Verdict.RETRY, Verdict.REFUSED):
            bidder.breaker.failure()
        else:
            bidder.breaker.success()
        self._breaker_shown(bidder)
        # the recorder's rounds are shared by the clicks decided together: shielded, so that cancelling this
        # click (a stop's drain) leaves the others' records to be written
        if result.verdict is Verdict.DELIVERED:
            await asyncio.shield(self.recorder.outcome(self._attempt_outcome(parked, result, Outcome.DELIVERED)))
            self._acknowledged(parked)
        elif result.verdict is Verdict.RETRY:
            delay = self.schedule.delay_s(parked.attempt, result.retry_after_s, self.rng)
            await asyncio.shield(self._park(parked, delay, Outcome.RETRY, result.error, result))
        else:
            if result.verdict is Verdict.GONE and bidder.disabled is None:
                bidder.disable(f"{bidder.member.click_uri} answered 410 Gone")
                self.recorder.counts[BIDDER_DISABLED] += 1
            self.recorder.metrics.refusal(bidder.member.member_id)
            await asyncio.shield(self._dead(parked, _DEAD_REASON[result.verdict], result.error, result))

    def _breaker_shown(self, bidder: Bidder) -> None:
        """The bidder's breaker state on its gauge, written only when it changed (each write locks an mmap)."""
        state = bidder.breaker.state
        if state is not bidder.shown_state:
            bidder.shown_state = state
            self.recorder.metrics.breaker(bidder.member.member_id, state)

    def _acknowledged(self, parked: Parked) -> None:
        """Time from the click (its id is a UUIDv7: the edge's clock) to its bidder's 2xx."""
        try:
            clicked_ms = uuid7_ms(parked.click.click_id)
        except ValueError:  # not a UUIDv7 (a record written by hand)
            return
        self.recorder.metrics.callback_latency(max(0.0, (_now_ms() - clicked_ms) / 1000))

    def _park(
        self, parked: Parked, delay_s: float, outcome: Outcome, why: str, result: Attempt | None = None
    ) -> Awaitable[None]:
        jittered = delay_s * (1 + 0.1 * self.rng.random())
        now = _now_ms()
        due = self.schedule.next_due_ms(parked.first_ms, now, jittered)
        if due is None:
            return self._dead(parked, "exhausted", why, result)
        # last_status and last_error are this step's own: no status when it was not an attempt (breaker open)
        status = result.status if result else None
        again = replace(parked, due_ms=due, last_status=status, last_error=why, reason=outcome.value)
        record = self._attempt_outcome(again, result, outcome) if result else self._outcome(again, outcome, error=why)
        return self.recorder.park(again.next_step(), replace(record, due_ms=due))

    def _dead(self, parked: Parked, reason: str, error: str = "", result: Attempt | None = None) -> Awaitable[None]:
        status = result.status if result else None  # this step's own outcome, as in _park
        dead = replace(parked, last_status=status, last_error=error, reason=reason)
        record = self._attempt_outcome(dead, result, Outcome.DEAD) if result else self._outcome(dead, Outcome.DEAD)
        return self.recorder.dead_letter(dead, replace(record, reason=reason, error=dead.last_error))

    @staticmethod
    def _outcome(parked: Parked, outcome: Outcome, *, error: str = "") -> DeliveryOutcome:
        click = parked.click
        return DeliveryOutcome(
            click.click_id,
            click.member_id,
            parked.attempt,
            outcome,
            error=error,
            test=click.test,
            step=parked.step,
            dims=dimensions(click),
        )

    @staticmethod
    def _attempt_outcome(parked: Parked, result: Attempt, outcome: Outcome) -> DeliveryOutcome:
        click = parked.click
        return DeliveryOutcome(
            click.click_id,
            click.member_id,
            parked.attempt,
            outcome,
            status=result.status,
            latency_ms=result.latency_ms,
            error=result.error,
            click_response=result.click_response,
            test=click.test,
            step=parked.step,
            dims=dimensions(click),
        )
