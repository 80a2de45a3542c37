"""Saying a condition that repeats for as long as it lasts: once, then at most once per interval, with a count."""

from __future__ import annotations

import time
from collections.abc import Callable

EVERY_S = 600.0


class Rarely:
    """Counts the repeats of a condition already said once; `repeat()` says when to say it again, and how many."""

    __slots__ = ("_clock", "_every_s", "_repeats", "_said_at")

    def __init__(self, every_s: float = EVERY_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._every_s = every_s
        self._clock = clock
        self._repeats = 0
        self._said_at = clock()

    @property
    def every_s(self) -> float:
        return self._every_s

    def said(self) -> None:
        """The condition was just said (the first time): repeats count from now."""
        self._repeats = 0
        self._said_at = self._clock()

    def repeat(self) -> int | None:
        """One more repeat; once `every_s` has passed since it was said, the repeats to say now, else None."""
        self._repeats += 1
        if self._clock() - self._said_at < self._every_s:
            return None
        repeats, self._repeats, self._said_at = self._repeats, 0, self._clock()
        return repeats
