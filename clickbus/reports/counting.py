"""What one notifier record adds to the report: its row, its counters, and the key that makes it count once.

The notifier's verdicts and outcomes (on `verdicts` and `deliveries`) carry the dimensions of the
click or impression they judge (`dims`). A record's row is the hour of the click or impression it is
about (from its UUIDv7 id), not the hour it was written: a callback delivered late still counts
beside its click. A record is counted once per (record id, step, outcome), whatever else it
carries: on Kafka a spooled outcome may be written twice, and its copies share their `step` (the
decision they record, the second half of their `idempotency_key`). Not the attempt: a click parked
again while its bidder's breaker is open keeps its attempt, and a replayed dead letter starts at
attempt 0 again, each a record of its own. Records written before steps existed use their attempt.

The key starts with the record's generation: the time the log stamped it, in windows of
`reports.dedup_window_s`. A copy is written close to its original (the spool ships a copy with the
original's log time; a notifier processing a click again after a crash writes it minutes later), so
a store finds a copy within a generation of its original (`port.neighbours`, `port.identity`) and keeps
only the two newest generations: memory for one to two windows of records, not for every record's life.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from clickbus.ids import uuid7_ms
from clickbus.reports.port import GENERATION_BYTES, Event
from clickbus.reports.schema import bucket

HOUR_MS = 3_600_000
# outcome -> its code in the dedup key
_COUNTED = {"valid": 1, "invalid": 2, "delivered": 3, "retry": 4, "dead": 5}
_IMPRESSION = (1, 0, 0, 0, 0)
_CLICK = (0, 1, 0, 0, 0)
_DELIVERED = (0, 0, 1, 0, 0)
_RETRIED = (0, 0, 0, 1, 0)
_DEAD = (0, 0, 0, 0, 1)


def event_of(value: bytes, generation: int = 0) -> Event | None:
    """The report event of one record on `verdicts` or `deliveries`; None when it counts for nothing.

    `generation`: the dedup window the record was written in (`generation_of` its log time).
    """
    try:
        data = orjson.loads(value)
        dims = data.get("dims")
        code = _COUNTED.get(data.get("outcome"))
        if code is None or not isinstance(dims, dict):  # parked, no_bidder, malformed; or written before dims
            return None
        return _event(data, dims, code, generation)
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError):
        return None


def _event(data: dict[str, Any], dims: dict[str, Any], code: int, generation: int) -> Event:
    record_id = str(data["click_id"])
    step = int(data["step"] if "step" in data else data.get("attempt") or 0)
    at_ms = _event_ms(record_id, data)
    reason = ""
    latency = -1
    if code <= 2:
        counts = _IMPRESSION if dims.get("kind") == "impression" else _CLICK
        if code == 2:
            reason = str(data.get("reason") or "unknown")
    elif code == 3:
        counts = _DELIVERED
        latency = bucket(max(0, int(data.get("ts_ms") or 0) - at_ms))
    else:
        counts = _RETRIED if code == 4 else _DEAD
    key = (
        at_ms // HOUR_MS * 3600,
        int(data["member_id"]),
        int(dims.get("publisher") or 0),
        int(dims.get("campaign") or 0),
        int(dims.get("creative") or 0),
        str(dims.get("placement") or ""),
        str(dims.get("country") or ""),
        str(dims.get("device") or "other"),
        str(dims.get("source") or ""),
        int(bool(data.get("test"))),
        reason,
    )
    return Event(seen_key(record_id, step, code, generation), key, counts, latency)


def _event_ms(record_id: str, data: dict[str, Any]) -> int:
    try:
        return uuid7_ms(record_id)
    except ValueError:  # not a UUIDv7: the time it was written
        return int(data.get("ts_ms") or 0)


def seen_key(record_id: str, step: int, code: int, generation: int = 0) -> bytes:
    """(generation, record id, step, outcome) as bytes that sort by generation (`port.SEEN_KEY_BYTES` long)."""
    try:
        raw = bytes.fromhex(record_id.replace("-", ""))
    except ValueError:
        raw = b""
    if len(raw) != 16:
        raw = hashlib.blake2b(record_id.encode("utf-8", "replace"), digest_size=16).digest()
    return generation.to_bytes(GENERATION_BYTES) + raw + (step & 0xFFFF).to_bytes(2) + bytes((code,))


def generation_of(log_ms: int, window_s: float) -> int:
    """The dedup generation of a record the log stamped at `log_ms`."""
    return max(0, log_ms) // max(1, int(window_s * 1000)) % 2**32
