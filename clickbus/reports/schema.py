"""The shape of a report row: its key (hour and dimensions), its counters and the latency histogram.

Every store keeps the same columns: `hour` (epoch seconds of the UTC hour; a folded day keeps its
midnight), the dimensions, `reason` ("" for valid traffic, else why it was judged invalid), the
counters, and one column per latency bucket. The buckets are fixed and log-spaced, so histograms
of any rows add up and p50/p99 can be read over any range.
"""

from __future__ import annotations

import math

DIMENSIONS = ("member", "publisher", "campaign", "creative", "placement", "country", "device", "source", "test")
TEXT_DIMENSIONS = frozenset({"placement", "country", "device", "source"})
KEY = ("hour", *DIMENSIONS, "reason")
COUNTERS = ("impressions", "clicks", "delivered", "retried", "dead_lettered")
# 1 ms to 1,000,000 ms (about 17 min) in 36 steps of 10^(1/6) (x1.47), plus one bucket below and one above
BUCKETS = 38
_STEPS_PER_DECADE = 6
BUCKET_COLUMNS = tuple(f"l{i:02d}" for i in range(BUCKETS))
VALUES = (*COUNTERS, *BUCKET_COLUMNS)
DEVICE_CLASSES = ("mobile", "tablet", "desktop", "other")

Key = tuple[int | str, ...]  # in `KEY` order


def bucket(ms: float) -> int:
    """The histogram bucket of a latency in milliseconds."""
    if ms < 1:
        return 0
    return min(BUCKETS - 1, 1 + int(math.log10(ms) * _STEPS_PER_DECADE))


def bucket_ms(index: int) -> float:
    """A representative latency of a bucket: its geometric middle (0.5 ms below 1 ms)."""
    if index == 0:
        return 0.5
    low = 10 ** ((index - 1) / _STEPS_PER_DECADE)
    return round(low * 10 ** (0.5 / _STEPS_PER_DECADE), 1)


def quantile(histogram: list[int] | tuple[int, ...], q: float) -> float | None:
    """The latency below which a fraction `q` of the histogram's samples lie; None without samples."""
    total = sum(histogram)
    if not total:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(histogram):
        seen += count
        if seen >= rank and count:
            return bucket_ms(index)
    return bucket_ms(BUCKETS - 1)
