"""prometheus-client internals clickbus relies on. Checked against prometheus-client 0.26.0.

- A histogram child's `_upper_bounds`, `_sum` and `_buckets`: a batch of observations is written the way
  `Histogram.observe` writes one (its sum, then the first bucket holding each value). The public API takes
  one value per call, each a lock and a memory-mapped write in multiprocess mode.
- `values.ValueClass`, chosen by prometheus-client when it is imported: the multiprocess directory is known
  only once the configuration is read, so it is chosen again then.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import Histogram, values

CHECKED_VERSION = "0.26.0"


def bucket_bounds(child: Histogram) -> Sequence[float]:
    """The upper bounds of a labelled histogram's buckets, +Inf last."""
    bounds: Sequence[float] = child._upper_bounds
    return bounds


def add_observations(child: Histogram, total: float, hits: Sequence[float]) -> None:
    """Add observations summing to `total`, `hits[i]` of them in bucket i (non-cumulative), as `observe` would."""
    child._sum.inc(total)
    for bucket, n in zip(child._buckets, hits, strict=True):
        if n:
            bucket.inc(n)


def choose_value_class() -> None:
    """Pick the sample storage again (memory-mapped files when PROMETHEUS_MULTIPROC_DIR is now set)."""
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
