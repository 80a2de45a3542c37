"""A circuit breaker per bidder: stop hammering a bidder that keeps failing.

Closed: every attempt goes through. After `failures` consecutive failures it
opens for `cooldown_s`; deliveries meanwhile are parked until it may close.
Then it is half-open: one probe goes through; success closes it, failure opens
it again for twice as long (up to 32 cooldowns).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from clickbus.metrics import BreakerState

MAX_COOLDOWN_FACTOR = 32


class Breaker:
    """Consecutive-failure circuit breaker with a single half-open probe."""

    __slots__ = ("_clock", "_factor", "_open_until", "_probing", "cooldown_s", "failures", "threshold")

    def __init__(self, threshold: int, cooldown_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self.failures = 0
        self._clock = clock
        self._open_until: float | None = None
        self._probing = False
        self._factor = 1

    @property
    def is_open(self) -> bool:
        return self._open_until is not None

    @property
    def state(self) -> BreakerState:
        """Closed; open while cooling down; half-open once a probe may go (or is going) through."""
        if self._open_until is None:
            return BreakerState.CLOSED
        if self._probing or self._clock() >= self._open_until:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def allow(self) -> bool:
        """May an attempt go through now? In half-open state only one probe at a time may."""
        if self._open_until is None:
            return True
        if self._probing or self._clock() < self._open_until:
            return False
        self._probing = True
        return True

    def wait_s(self) -> float:
        """Seconds until a probe may go through (0 when closed)."""
        return 0.0 if self._open_until is None else max(0.0, self._open_until - self._clock())

    def success(self) -> None:
        self.failures, self._open_until, self._probing, self._factor = 0, None, False, 1

    def failure(self) -> None:
        self.failures += 1
        if self._probing:
            self._factor = min(self._factor * 2, MAX_COOLDOWN_FACTOR)
        self._probing = False
        if self.failures >= self.threshold:
            self._open_until = self._clock() + self.cooldown_s * self._factor
