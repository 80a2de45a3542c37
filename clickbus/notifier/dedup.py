"""Dedup windows: has this key been seen within the last window?

A window keeps, per tracked key, a 60-bit hash in a set (so a lookup is one
hash probe) and the same hash with its expiry in two parallel `array('q')`
rings, in arrival order, so expired keys are dropped from the front without
scanning. Keys arrive in log order, so expiries are (made) non-decreasing.
That layout costs well under 100 bytes per key, where a dict of key bytes to
float expiries would cost several times as much (see `bench/delivery.py`).
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Sequence

_MASK = (1 << 60) - 1  # ints below 2**60 take 32 bytes in CPython, 2**64 ones take 36


def key_hash(key: bytes) -> int:
    """A 60-bit hash of a dedup key; collisions at 2**-60 per pair are acceptable for dedup."""
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") & _MASK


class DedupWindow:
    """Keys seen within the last `window_ms` of log time."""

    __slots__ = ("_expiries", "_hashes", "_head", "_now", "_seen", "window_ms")

    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self._seen: set[int] = set()
        self._hashes = array("q")
        self._expiries = array("q")
        self._head = 0
        self._now = 0

    def __len__(self) -> int:
        return len(self._seen)

    def check_and_add(self, key: bytes, ts_ms: int, also: Sequence[DedupWindow] = ()) -> bool:
        """True when `key` was already seen in the window ending at `ts_ms` (here or in `also`); else remember it."""
        self._advance(ts_ms)
        h = key_hash(key)
        if h in self._seen or any(other.holds(h, ts_ms) for other in also):
            return True
        self._seen.add(h)
        self._hashes.append(h)
        self._expiries.append(self._now + self.window_ms)
        return False

    def holds(self, h: int, ts_ms: int) -> bool:
        """Whether the key hash `h` is in the window ending at `ts_ms` (nothing is added)."""
        self._advance(ts_ms)
        return h in self._seen

    def _advance(self, ts_ms: int) -> None:
        self._now = max(self._now, ts_ms)
        head, hashes, expiries, seen = self._head, self._hashes, self._expiries, self._seen
        end = len(expiries)
        while head < end and expiries[head] <= self._now:
            seen.discard(hashes[head])
            head += 1
        self._head = head
        if head > 4096 and head * 2 > end:  # compact once the dead prefix dominates
            del hashes[:head]
            del expiries[:head]
            self._head = 0
