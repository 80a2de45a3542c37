"""The console's figures: one sample a second of every process's metrics, kept for the last minutes.

A sample is computed from two collections of the metrics a second apart (rates) and one
`WINDOW_S` earlier (latencies: quantiles of the histogram buckets filled in that window). The
totals since start are what `/metrics` says, summed over processes as Prometheus would sum
them, with quantiles read as `clickbus status` reads them (the upper bound of the bucket).
"""

from __future__ import annotations

import os
import time
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, multiprocess

from clickbus.config import Config
from clickbus.metrics import VALID, BreakerState, Metrics, multiprocess_dir

RING = 600  # ten minutes of samples at one a second
WINDOW_S = 10.0  # latencies: quantiles of what the histograms gathered in the last ten seconds
MB = 1024 * 1024
Labels = tuple[tuple[str, str], ...]
Samples = dict[str, dict[Labels, float]]

# What the page calls each delivery outcome, from `clickbus_deliveries_total{status}` and friends.
CALLBACKS = ("delivered", "retried", "held", "refused", "dead_lettered")
_STATUS_NAMES = {"delivered": "delivered", "retry": "retried", "parked": "held"}


def collect(metrics: Metrics) -> Samples:
    """Every process's samples (this process's alone outside multiprocess mode), by name and labels."""
    metrics.flush()
    path = multiprocess_dir()
    if path is None:
        families: Iterable[Any] = metrics.registry.collect()
    else:
        registry = CollectorRegistry()
        collector = multiprocess.MultiProcessCollector(registry, str(path))  # type: ignore[no-untyped-call]
        families = collector.collect()  # type: ignore[no-untyped-call]
    samples: Samples = defaultdict(dict)
    for family in families:
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            samples[sample.name][labels] = samples[sample.name].get(labels, 0.0) + sample.value
    return dict(samples)


def by(samples: Samples, name: str, label: str, **only: str) -> dict[str, float]:
    """The sum of `name` by the value of `label`, over series whose labels include `only`."""
    sums: dict[str, float] = defaultdict(float)
    for labels, value in samples.get(name, {}).items():
        d = dict(labels)
        if all(d.get(k) == v for k, v in only.items()):
            sums[d.get(label, "")] += value
    return dict(sums)


def total(samples: Samples, name: str) -> float:
    return sum(samples.get(name, {}).values())


def buckets(samples: Samples, name: str) -> dict[float, float]:
    """A histogram's cumulative buckets by upper bound, summed over its series."""
    out: dict[float, float] = defaultdict(float)
    for labels, value in samples.get(f"{name}_bucket", {}).items():
        out[float(dict(labels)["le"])] += value
    return dict(out)


def quantile_ms(counts: Mapping[float, float], q: float) -> float | None:
    """The upper bound (ms) of the bucket holding quantile `q` of cumulative `counts`; None when empty or past all."""
    if not counts or counts[max(counts)] <= 0:
        return None
    bounds = sorted(counts)
    rank = q * counts[bounds[-1]]
    bound = next(b for b in bounds if counts[b] >= rank)
    return None if bound == float("inf") else bound * 1000


def _delta(after: Mapping[float, float], before: Mapping[float, float]) -> dict[float, float]:
    return {b: max(0.0, v - before.get(b, 0.0)) for b, v in after.items()}


def clicks_by_reason(samples: Samples) -> dict[str, float]:
    """Clicks as the notifier judged them."""
    return by(samples, "clickbus_verdicts_total", "reason", kind="click")


def impressions_by_reason(samples: Samples) -> dict[str, float]:
    """Impressions as the notifier judged them; as the edge recorded them when the notifier does not read them."""
    judged = by(samples, "clickbus_verdicts_total", "reason", kind="impression")
    return judged or by(samples, "clickbus_impressions_total", "reason")


def callbacks_by_member(samples: Samples) -> dict[str, dict[str, float]]:
    """Per bidder (member): delivered, retried, held (not attempted), refused, dead-lettered."""
    out: dict[str, dict[str, float]] = defaultdict(lambda: dict.fromkeys(CALLBACKS, 0.0))
    for labels, value in samples.get("clickbus_deliveries_total", {}).items():
        d = dict(labels)
        name = _STATUS_NAMES.get(d.get("status", ""))
        if name is not None:
            out[d.get("member", "")][name] += value
    for member, value in by(samples, "clickbus_callback_refusals_total", "member").items():
        out[member]["refused"] += value
    for member, value in by(samples, "clickbus_dead_letters_total", "member").items():
        out[member]["dead_lettered"] += value
    return dict(out)


def breakers(samples: Samples) -> dict[str, str]:
    """The breaker state of each bidder, by name."""
    states = by(samples, "clickbus_breaker_state", "member")
    return {member: BreakerState(int(value)).name.lower() for member, value in states.items()}


def _valid_first(counts: Mapping[str, float]) -> dict[str, float]:
    return {k: counts[k] for k in sorted(counts, key=lambda r: (r != VALID, r))}


@dataclass(frozen=True, slots=True)
class Disk:
    """The log's bytes on disk, and the most retention lets it hold (None where a broker keeps it)."""

    used: int
    bound: int | None


def log_disk(config: Config) -> Disk:
    """The embedded log's directory against `partitions x (retention_mb + segment_mb)`; on Kafka, the spool."""
    if config.log.backend != "embedded":
        return Disk(_du(config.data_dir / config.log.kafka.spool_dir), None)
    root = config.log_path
    embedded = config.log.embedded
    used, partitions = 0, 0
    try:
        entries = list(os.scandir(root))
    except OSError:
        return Disk(0, 0)
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            size = _du(Path(entry.path))
            used += size
            partitions += 1
        elif entry.is_file(follow_symlinks=False):
            used += entry.stat(follow_symlinks=False).st_size
    return Disk(used, partitions * (embedded.retention_mb + embedded.segment_mb) * MB)


def _du(path: Path) -> int:
    used = 0
    try:
        for entry in os.scandir(path):
            if entry.is_file(follow_symlinks=False):
                used += entry.stat(follow_symlinks=False).st_size
            elif entry.is_dir(follow_symlinks=False):
                used += _du(Path(entry.path))
    except OSError:  # gone meanwhile (retention, a spool shipped): what was counted stands
        pass
    return used


def totals(samples: Samples, disk: Disk) -> dict[str, Any]:
    """The figures since start, as `/metrics` has them."""
    members = callbacks_by_member(samples)
    states = breakers(samples)
    unavailable = samples.get("clickbus_log_unavailable")
    return {
        "clicks": _valid_first(clicks_by_reason(samples)),
        "impressions": _valid_first(impressions_by_reason(samples)),
        "redirect_p50_ms": quantile_ms(buckets(samples, "clickbus_redirect_seconds"), 0.5),
        "redirect_p99_ms": quantile_ms(buckets(samples, "clickbus_redirect_seconds"), 0.99),
        "callback_p99_ms": quantile_ms(buckets(samples, "clickbus_click_to_callback_seconds"), 0.99),
        "bidders": {
            m: {**members.get(m, dict.fromkeys(CALLBACKS, 0.0)), "breaker": states.get(m, "")}
            for m in sorted(set(members) | set(states), key=lambda m: (len(m), m))
        },
        "lag": total(samples, "clickbus_consumer_lag_records"),
        "spool_records": total(samples, "clickbus_spool_records"),
        "retry_queue": total(samples, "clickbus_retry_queue_records"),
        "log_ready": None if not unavailable else max(unavailable.values()) == 0,
        "disk_bytes": disk.used,
        "disk_bound_bytes": disk.bound,
    }


def _rates(after: Mapping[str, float], before: Mapping[str, float], dt: float) -> dict[str, float]:
    return {k: round(max(0.0, v - before.get(k, 0.0)) / dt, 3) for k, v in after.items()}


def _callback_rates(after: Samples, before: Samples, dt: float) -> dict[str, float]:
    def summed(samples: Samples) -> dict[str, float]:
        out = dict.fromkeys(CALLBACKS, 0.0)
        for counts in callbacks_by_member(samples).values():
            for k, v in counts.items():
                out[k] += v
        return out

    return _rates(summed(after), summed(before), dt)


class Sampler:
    """Takes a sample a second (when `tick` is called) and keeps the last `RING`."""

    def __init__(self, config: Config, metrics: Metrics, ring: int = RING) -> None:
        self.config = config
        self.metrics = metrics
        self.ring: deque[dict[str, Any]] = deque(maxlen=ring)
        self._history: deque[tuple[float, Samples]] = deque()  # collections of the last WINDOW_S
        self.latest: dict[str, Any] = {}

    def tick(self, now: float | None = None) -> dict[str, Any] | None:
        """Collect, and append a sample if there was a collection before this one; the sample."""
        now = time.time() if now is None else now
        samples = collect(self.metrics)
        disk = log_disk(self.config)
        self.latest = totals(samples, disk)
        while len(self._history) > 1 and self._history[0][0] < now - WINDOW_S:  # the last one stays: rates
            self._history.popleft()
        sample = self._sample(now, samples, disk) if self._history else None
        self._history.append((now, samples))
        if sample is not None:
            self.ring.append(sample)
        return sample

    def _sample(self, now: float, samples: Samples, disk: Disk) -> dict[str, Any]:
        before_at, before = self._history[-1]
        window = self._history[0][1]
        dt = max(now - before_at, 1e-3)
        redirects = _delta(buckets(samples, "clickbus_redirect_seconds"), buckets(window, "clickbus_redirect_seconds"))
        callbacks = _delta(
            buckets(samples, "clickbus_click_to_callback_seconds"),
            buckets(window, "clickbus_click_to_callback_seconds"),
        )
        return {
            "t": round(now, 3),
            "clicks": _rates(clicks_by_reason(samples), clicks_by_reason(before), dt),
            "impressions": _rates(impressions_by_reason(samples), impressions_by_reason(before), dt),
            "redirect_p50_ms": quantile_ms(redirects, 0.5),
            "redirect_p99_ms": quantile_ms(redirects, 0.99),
            "callback_p99_ms": quantile_ms(callbacks, 0.99),
            "callbacks": _callback_rates(samples, before, dt),
            "lag": self.latest["lag"],
            "spool_records": self.latest["spool_records"],
            "disk_bytes": disk.used,
        }
