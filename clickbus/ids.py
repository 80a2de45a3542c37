"""Time-ordered unique ids (UUID version 7, RFC 9562) for clicks and impressions.

The random bits come from the operating system's CSPRNG (`os.urandom`), as RFC 9562 section 6.9 asks where
ids must not be guessed: a click id is also the webhook id bidders deduplicate on. Ordering within a
process follows RFC 9562 section 6.2, method 1: `rand_a` is a 12-bit counter, seeded randomly (with its top
bits clear, leaving room to count) at each new millisecond and incremented within one; when it overflows,
the timestamp moves on by a millisecond.
"""

from __future__ import annotations

import os
import time

_last_ms = 0
_counter = 0


def uuid7(now_ns: int | None = None) -> str:
    """A UUIDv7 string; ids minted by one process sort in the order they were minted."""
    global _last_ms, _counter
    ms = (time.time_ns() if now_ns is None else now_ns) // 1_000_000
    # a read per id (about 0.7 us): forked workers share this module's state, never the kernel's randomness
    random = int.from_bytes(os.urandom(9))  # 10 bits of counter seed, 62 of rand_b
    if ms > _last_ms:
        _last_ms, _counter = ms, random >> 62
    else:  # same millisecond (or clock went back): keep order with the 12-bit counter
        ms, _counter = _last_ms, _counter + 1
        if _counter > 0xFFF:
            _last_ms, ms, _counter = _last_ms + 1, _last_ms + 1, 0
    value = (ms << 80) | (0x7 << 76) | (_counter << 64) | (0x2 << 62) | (random & (1 << 62) - 1)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def uuid7_ms(uid: str) -> int:
    """The millisecond timestamp inside a UUIDv7 string."""
    return int(uid[:8] + uid[9:13], 16)
