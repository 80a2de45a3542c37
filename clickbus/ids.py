"""Time-ordered unique ids (UUID version 7, RFC 9562) for clicks and impressions.

The random bits come from the operating system's CSPRNG (`os.urandom`), as RFC 9562 section 6.9 asks where
ids must not be guessed: a click id is also the webhook id bidders deduplicate on. They are read for 256 ids
at a time (a read per id was a system call per click), each byte used once, and a forked child forgets what
its parent read before minting any id of its own. Ordering within a
process follows RFC 9562 section 6.2, method 1: `rand_a` is a 12-bit counter, seeded randomly (with its top
bits clear, leaving room to count) at each new millisecond and incremented within one; when it overflows,
the timestamp moves on by a millisecond.
"""

from __future__ import annotations

import os
import time

_last_ms = 0
_counter = 0
_DRAW = 9  # random bytes per id: 10 bits of counter seed, 62 of rand_b
_POOL = _DRAW * 256  # drawn from the kernel at once: one getrandom call per 256 ids
_pool = b""
_at = 0
_RAND_B = (1 << 62) - 1


def _forget_pool() -> None:
    """A forked child must never mint ids from random bytes its parent also holds."""
    global _pool, _at
    _pool, _at = b"", 0


os.register_at_fork(after_in_child=_forget_pool)


def uuid7(now_ns: int | None = None) -> str:
    """A UUIDv7 string; ids minted by one process sort in the order they were minted."""
    global _last_ms, _counter, _pool, _at
    ms = (time.time_ns() if now_ns is None else now_ns) // 1_000_000
    if _at + _DRAW > len(_pool):
        _pool, _at = os.urandom(_POOL), 0
    random = int.from_bytes(_pool[_at : _at + _DRAW])
    _at += _DRAW
    if ms > _last_ms:
        _last_ms, _counter = ms, random >> 62
    else:  # same millisecond (or clock went back): keep order with the 12-bit counter
        ms, _counter = _last_ms, _counter + 1
        if _counter > 0xFFF:
            _last_ms, ms, _counter = _last_ms + 1, _last_ms + 1, 0
    value = (ms << 80) | (0x7 << 76) | (_counter << 64) | (0x2 << 62) | (random & _RAND_B)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def uuid7_ms(uid: str) -> int:
    """The millisecond timestamp inside a UUIDv7 string."""
    return int(uid[:8] + uid[9:13], 16)
