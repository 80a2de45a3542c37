"""Token buckets for the server-click API keys, kept in memory or in a file every worker of the host shares.

`clickbus run --workers N` runs N processes; buckets kept in each would let a key through N
times its `rate_per_s`. Dividing the rate by N would not hold either: the kernel spreads
connections over workers by hash, so one publisher's few connections may all land on one
worker and get a fraction of its rate. So the workers share one file (`data_dir/rate-buckets`),
one 16-byte slot per key, each take a read-modify-write under a POSIX lock on that slot: a
few microseconds, and only on the server-click path. The slot holds the tokens and the
CLOCK_MONOTONIC time they were counted at, which every process of the host reads alike.
The file is written with real zeros when opened, so later writes never need a new block and
a full disk cannot fail them; whatever it holds (stale, from before a reboot) is clamped to
at most one burst. A file cut short while in use (a truncating hand, a restore) is written
out again with zeros, as at open: its slots start again from a burst, as after a restart.
Should the file itself fail (the rebuild cannot write), the take is answered from buckets in
this process's memory, until the file works again: the limit then holds per worker, and no
click gets a 5xx for it.
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

logger = logging.getLogger(__name__)

SLOT = struct.Struct("<dd")  # tokens, monotonic time of the count


@dataclass(frozen=True, slots=True)
class Take:
    """What one take found: whether a token was taken, and the tokens left."""

    allowed: bool
    tokens: float


def take(tokens: float, at: float, now: float, rate: float, burst: float) -> tuple[Take, float]:
    """Refill a bucket counted `tokens` at `at` (0: never) up to `now`, take a token: the outcome, the new count."""
    if at == 0.0:
        tokens, at = burst, now
    elif not (math.isfinite(tokens) and math.isfinite(at)) or at > now:  # damaged, or counted before a reboot
        tokens, at = 0.0, now
    tokens = min(burst, max(0.0, tokens) + (now - at) * rate)
    if tokens < 1.0:
        return Take(False, tokens), tokens
    return Take(True, tokens - 1.0), tokens - 1.0


def give_back(tokens: float, burst: float) -> float:
    """A bucket counted `tokens`, with one taken token returned: never more than a burst."""
    return min(burst, max(0.0, tokens) + 1.0) if math.isfinite(tokens) else 0.0


class Buckets(Protocol):
    """Numbered token buckets."""

    def take(self, slot: int, now: float, rate: float, burst: float) -> Take: ...

    def give_back(self, slot: int, burst: float) -> None: ...

    def close(self) -> None: ...


class MemoryBuckets:
    """Buckets in this process only (a single worker, or tests)."""

    def __init__(self, slots: int) -> None:
        self._counts = [(0.0, 0.0)] * slots

    def take(self, slot: int, now: float, rate: float, burst: float) -> Take:
        outcome, tokens = take(*self._counts[slot], now, rate, burst)
        self._counts[slot] = (tokens, now)
        return outcome

    def give_back(self, slot: int, burst: float) -> None:
        tokens, at = self._counts[slot]
        self._counts[slot] = (give_back(tokens, burst), at)

    def close(self) -> None:
        pass


class FileBuckets:
    """Buckets in a file shared by every process that opens it (see the module)."""

    def __init__(self, path: Path, slots: int) -> None:
        self._size = slots * SLOT.size
        self._memory = MemoryBuckets(slots)  # while the file fails
        self._failing = False
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            self._allocate()
        except OSError:
            os.close(self._fd)
            raise

    def _allocate(self) -> None:
        """Write zeros from the file's end to its full size, under a lock on the whole file."""
        fcntl.lockf(self._fd, fcntl.LOCK_EX)
        try:
            have = os.fstat(self._fd).st_size
            if have < self._size:
                os.pwrite(self._fd, bytes(self._size - have), have)
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN)

    def take(self, slot: int, now: float, rate: float, burst: float) -> Take:
        try:
            return self._update(slot, lambda counted, at: _taken(counted, at, now, rate, burst))
        except OSError as exc:
            self._failed(exc)
        return self._memory.take(slot, now, rate, burst)

    def give_back(self, slot: int, burst: float) -> None:
        try:
            self._update(slot, lambda counted, at: (None, SLOT.pack(give_back(counted, burst), at)))
        except OSError as exc:
            self._failed(exc)
            self._memory.give_back(slot, burst)

    def _update(self, slot: int, change: _Change[_T]) -> _T:
        """Read `slot` under its lock, write what `change` makes of it; rebuild a file cut short first."""
        offset = slot * SLOT.size
        rebuilt = False
        while True:
            fcntl.lockf(self._fd, fcntl.LOCK_EX, SLOT.size, offset)
            try:
                raw = os.pread(self._fd, SLOT.size, offset)
                if len(raw) == SLOT.size or rebuilt:  # cut again at once: count from nothing, as a new file does
                    outcome, packed = change(*SLOT.unpack(raw) if len(raw) == SLOT.size else (0.0, 0.0))
                    os.pwrite(self._fd, packed, offset)
                    self._recovered()
                    return outcome
            finally:
                fcntl.lockf(self._fd, fcntl.LOCK_UN, SLOT.size, offset)
            # Cut short: rebuild under the whole-file lock (taken only with no slot lock held, so never a deadlock).
            logger.warning("the rate-buckets file was cut short; writing it out again")
            self._allocate()
            rebuilt = True

    def _failed(self, exc: OSError) -> None:
        if not self._failing:
            logger.error("the rate-buckets file failed (%s); this worker's buckets are in memory meanwhile", exc)
        self._failing = True

    def _recovered(self) -> None:
        if self._failing:
            logger.warning("the rate-buckets file works again")
        self._failing = False

    def close(self) -> None:
        os.close(self._fd)


_T = TypeVar("_T")
_Change = Callable[[float, float], tuple[_T, bytes]]


def _taken(counted: float, at: float, now: float, rate: float, burst: float) -> tuple[Take, bytes]:
    outcome, tokens = take(counted, at, now, rate, burst)
    return outcome, SLOT.pack(tokens, now)
