"""Time-ordered unique ids (UUID version 7, RFC 9562) for clicks and impressions."""

from __future__ import annotations

import random
import time

_last_ms = 0
_counter = 0


def uuid7(now_ns: int | None = None) -> str:
    """A UUIDv7 string; ids minted by one process sort in the order they were minted."""
    global _last_ms, _counter
    ms = (time.time_ns() if now_ns is None else now_ns) // 1_000_000
    if ms > _last_ms:
        _last_ms, _counter = ms, random.getrandbits(10)
    else:  # same millisecond (or clock went back): keep order with the 12-bit counter
        ms, _counter = _last_ms, _counter + 1
        if _counter > 0xFFF:
            _last_ms, ms, _counter = _last_ms + 1, _last_ms + 1, 0
    # `random` is reseeded in forked children, so worker processes do not share a sequence
    value = (ms << 80) | (0x7 << 76) | (_counter << 64) | (0x2 << 62) | random.getrandbits(62)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def uuid7_ms(uid: str) -> int:
    """The millisecond timestamp inside a UUIDv7 string."""
    return int(uid[:8] + uid[9:13], 16)
