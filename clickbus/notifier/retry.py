"""The retry schedule and the parked-delivery envelope.

A delivery that must be tried again is *parked*: appended to `Topic.RETRY` as
a `Parked` envelope holding the click, how many attempts were made and when the
next one is due. Parked deliveries live in the log, so they survive restarts.
Delays grow exponentially with "equal jitter" (half fixed, half random) and
honour a bidder's `Retry-After`; past the horizon a click is dead-lettered.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import orjson

from clickbus.records import ClickRecord

MAX_RETRY_AFTER_S = 7 * 86400.0


@dataclass(frozen=True, slots=True)
class Parked:
    """A click waiting for its next delivery attempt (or, in the DLQ, for a replay)."""

    click: ClickRecord
    attempt: int
    due_ms: int
    first_ms: int
    last_status: int | None = None
    last_error: str = ""
    reason: str = ""

    def to_json(self) -> bytes:
        return orjson.dumps(self)

    @classmethod
    def from_json(cls, raw: bytes) -> Parked:
        data: dict[str, Any] = orjson.loads(raw)
        click = ClickRecord.from_json(orjson.dumps(data.pop("click")))
        known = {"attempt", "due_ms", "first_ms", "last_status", "last_error", "reason"}
        return cls(click=click, **{k: v for k, v in data.items() if k in known})

    def replayed(self, now_ms: int) -> Parked:
        """This dead letter as a fresh parked delivery, due now, with a new horizon."""
        return replace(self, attempt=0, due_ms=now_ms, first_ms=now_ms, reason="replay")


@dataclass(frozen=True, slots=True)
class Schedule:
    """Exponential backoff with jitter, capped per delay and bounded by a horizon."""

    base_s: float
    max_delay_s: float
    horizon_s: float

    def delay_s(self, attempt: int, retry_after_s: float | None, rng: random.Random) -> float:
        """The wait after failed attempt number `attempt` (1-based)."""
        cap = min(self.max_delay_s, self.base_s * math.pow(2.0, min(attempt - 1, 60)))
        delay = cap / 2 + rng.random() * cap / 2
        return max(delay, retry_after_s) if retry_after_s is not None else delay

    def next_due_ms(self, parked_first_ms: int, now_ms: int, delay_s: float) -> int | None:
        """When to try again, or None once that would fall past the horizon."""
        due = now_ms + int(delay_s * 1000)
        return None if due > parked_first_ms + int(self.horizon_s * 1000) else due


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or HTTP-date); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_S)
    try:
        when: datetime = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return min(max(0.0, when.timestamp() - now), MAX_RETRY_AFTER_S)
