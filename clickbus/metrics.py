"""Prometheus metrics: every clickbus metric is declared here, and `/metrics` renders them.

Each role records through one `Metrics` object (the edge through `app[METRICS]`, other roles
through `default_metrics()`), calling its named methods: `click`, `impression`, `insertion`,
`log_append`, `redirect`, `spool`, `delivery`, `retry_depth`, `dead_letter`, `consumer_lag`,
`retention_lost`, `log_corrupt`, `task_failure`, `breaker`, `verdict`, `callback_latency`, `refusal`,
`log_ready`. Counts and
latencies of the hot paths are summed in the process and written at most a second apart (and at
every render and shutdown). The processes of one `clickbus run --workers N` (and the notifier
beside them) share a directory of sample files (prometheus-client's multiprocess mode) so that
`/metrics` on any worker reports the whole service. `use_multiprocess_dir` must run before the
first metric exists; without it, samples stay in the process (tests, one-process tools).

The sample files are sparse memory maps: a page first written on a full filesystem kills the
process with SIGBUS. So they never live in `data_dir` (whose disk the log fills): `private_dir`
is on memory-backed storage (`/dev/shm`, else `$XDG_RUNTIME_DIR`), named for the user and the
`clickbus run` process that owns it, removed when that process exits (and, if it was killed,
by the next start).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import tempfile
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from clickbus.compat.prometheus import add_observations, bucket_bounds, choose_value_class

logger = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
PRIVATE_PREFIX = "clickbus-metrics-"
VALID = "valid"  # the `reason` label of valid clicks and impressions
OTHER_MEMBER = "other"  # the `member` label of every member id that is not configured
# Redirects answer after an fsync'd append: most in a few ms, the budget is tens of ms.
REDIRECT_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
APPEND_BUCKETS = REDIRECT_BUCKETS
# From the click to its bidder's 2xx: tens of milliseconds when all is well, hours through retries.
CALLBACK_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0, 21600.0)


class BreakerState(IntEnum):
    """The value of `clickbus_breaker_state` for one bidder."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


M = TypeVar("M", Counter, Gauge, Histogram)
P = ParamSpec("P")
FLUSH_EVERY_S = 1.0


def _never_raises(method: Callable[Concatenate[Metrics, P], None]) -> Callable[Concatenate[Metrics, P], None]:
    """Record with `method`, or log (the first time) and count its failure: a metric never fails a request.

    A sample file may vanish under a process (a restart that took a live service's directory for a dead
    one's, before #16), or its disk may fail; the click it counts is recorded all the same.
    """

    def recording(self: Metrics, /, *args: P.args, **kwargs: P.kwargs) -> None:
        try:
            method(self, *args, **kwargs)
        except Exception as exc:
            self._failed(method.__name__, exc)

    recording.__name__, recording.__doc__ = method.__name__, method.__doc__
    return recording


class _Batch:
    """Hot-path samples summed in the process and written to prometheus-client at most once a second.

    In multiprocess mode a sample write takes a lock and writes a memory-mapped file (about a
    microsecond); a redirect makes five, so they are summed here and written together. A histogram's
    observations are written the way `Histogram.observe` does: its sum, and the first bucket that
    holds each value (tests/test_metrics.py checks the two agree).
    """

    __slots__ = ("counts", "histograms", "lock", "next_flush")

    def __init__(self) -> None:
        self.counts: dict[Counter, int] = {}
        self.histograms: dict[Histogram, list[float]] = {}
        self.lock = threading.Lock()
        self.next_flush = 0.0

    def count(self, child: Counter) -> None:
        with self.lock:
            self.counts[child] = self.counts.get(child, 0) + 1
        if time.monotonic() >= self.next_flush:
            self.flush()

    def observe(self, child: Histogram, value: float) -> None:
        bounds = bucket_bounds(child)
        with self.lock:
            entry = self.histograms.get(child)
            if entry is None:
                entry = self.histograms[child] = [0.0] * (len(bounds) + 1)  # sum, then a count per bucket
            entry[0] += value
            entry[1 + bisect_left(bounds, value)] += 1
        if time.monotonic() >= self.next_flush:
            self.flush()

    def flush(self) -> None:
        with self.lock:
            counts, self.counts = self.counts, {}
            histograms, self.histograms = self.histograms, {}
            self.next_flush = time.monotonic() + FLUSH_EVERY_S
        for counter, n in counts.items():
            counter.inc(n)
        for histogram, entry in histograms.items():
            add_observations(histogram, entry[0], entry[1:])


@dataclass(frozen=True, slots=True)
class Metrics:
    """Every clickbus metric, with one method per thing worth counting."""

    registry: CollectorRegistry
    clicks: Counter
    impressions: Counter
    insertions: Counter
    append_seconds: Histogram
    redirect_seconds: Histogram
    spool_records: Gauge
    spool_age: Gauge
    deliveries: Counter
    retry_records: Gauge
    dead_letters: Counter
    lag: Gauge
    breakers: Gauge
    retention_lost_records: Counter
    corrupt_records: Counter
    task_failures: Counter
    metric_errors: Counter
    verdicts: Counter
    callback_seconds: Histogram
    refusals: Counter
    log_unavailable: Gauge
    # Label children resolved once: `labels()` takes a lock and builds a tuple on every call.
    _bound: dict[tuple[object, ...], Any] = field(default_factory=dict, repr=False)
    _batch: _Batch = field(default_factory=_Batch, repr=False)
    # Member ids that get a `member` label of their own; any other id a click carries (anyone can
    # send one) counts under `member="other"`, so strangers cannot add series.
    _members: set[int] = field(default_factory=set, repr=False)
    _said: set[str] = field(default_factory=set, repr=False)  # methods whose failure was logged already

    def label_members(self, member_ids: Iterable[int]) -> None:
        """Give these configured members a `member` label of their own (every other id is `other`)."""
        self._members.update(member_ids)

    @_never_raises
    def task_failure(self, task: str) -> None:
        """A supervised background task failed (see tasks.py)."""
        self._child(self.task_failures, task).inc()

    def _failed(self, what: str, exc: Exception) -> None:
        if what not in self._said:
            self._said.add(what)
            logger.error("metrics: %s failed; the request goes on, later failures are counted", what, exc_info=exc)
        try:
            self._child(self.metric_errors, what).inc()
        except Exception as again:  # the counter of failures fails too: the log line said it
            logger.debug("metrics: cannot count a failure of %s: %s", what, again)

    def _member(self, member_id: int) -> str:
        return str(member_id) if member_id in self._members else OTHER_MEMBER

    @_never_raises
    def flush(self) -> None:
        """Write the samples gathered since the last flush (done at most a second apart, and before rendering)."""
        self._batch.flush()

    def _child(self, family: M, *labels: str) -> M:
        key = (id(family), *labels)
        child = self._bound.get(key)
        if child is None:
            child = self._bound[key] = family.labels(*labels)
        return child

    @_never_raises
    def click(self, source: str, reason: str | None) -> None:
        """One click recorded; `reason` is None for valid clicks."""
        self._batch.count(self._child(self.clicks, source, reason or VALID))

    @_never_raises
    def impression(self, source: str, reason: str | None) -> None:
        """One impression recorded; `reason` is None for valid impressions."""
        self._batch.count(self._child(self.impressions, source, reason or VALID))

    @_never_raises
    def insertion(self, outcome: str) -> None:
        """One insertion request: `ok`, or the kind of refusal (`invalid`, `bad_body`)."""
        self._batch.count(self._child(self.insertions, outcome))

    @_never_raises
    def log_append(self, topic: str, seconds: float, ok: bool) -> None:
        """One append to the log and how long it took to become durable (or to fail)."""
        self._batch.observe(self._child(self.append_seconds, topic, "ok" if ok else "error"), seconds)

    @_never_raises
    def redirect(self, status: int, seconds: float) -> None:
        """One answer of the click redirect and how long it took."""
        self._batch.observe(self._child(self.redirect_seconds, str(status)), seconds)

    @_never_raises
    def spool(self, records: int, oldest_age_s: float) -> None:
        """The local spool of this process: how many records, the oldest one's age."""
        self.spool_records.set(records)
        self.spool_age.set(oldest_age_s)

    @_never_raises
    def delivery(self, member_id: int, status: str) -> None:
        """One delivery attempt: `delivered`, `retry`, `failed`, `rejected`, ... (a short word, not a URL)."""
        self._batch.count(self._child(self.deliveries, self._member(member_id), status))

    @_never_raises
    def retry_depth(self, records: int) -> None:
        """Clicks this process holds for a later delivery attempt."""
        self.retry_records.set(records)

    @_never_raises
    def dead_letter(self, member_id: int) -> None:
        """One click given up on and written to the dead-letter topic."""
        self._child(self.dead_letters, self._member(member_id)).inc()

    @_never_raises
    def consumer_lag(self, group: str, topic: str, partition: int, records: int) -> None:
        """Records of one partition the group has not yet committed."""
        self._child(self.lag, group, topic, str(partition)).set(records)

    @_never_raises
    def retention_lost(self, group: str, topic: str, records: int) -> None:
        """Records the embedded log's retention deleted before `group` had consumed them."""
        self._child(self.retention_lost_records, group, topic).inc(records)

    @_never_raises
    def log_corrupt(self, topic: str, records: int) -> None:
        """Records of the embedded log lost to damaged bytes, skipped by a reader that met them."""
        self._child(self.corrupt_records, topic).inc(records)

    @_never_raises
    def verdict(self, kind: str, reason: str | None) -> None:
        """The notifier judged one click or impression (`kind`): valid (`reason` None) or invalid, and why."""
        self._batch.count(self._child(self.verdicts, kind, reason or VALID))

    @_never_raises
    def breaker(self, member_id: int, state: BreakerState) -> None:
        """The circuit breaker state of one bidder."""
        self._child(self.breakers, self._member(member_id)).set(int(state))

    @_never_raises
    def callback_latency(self, seconds: float) -> None:
        """A bidder acknowledged a click `seconds` after the click was recorded."""
        self._batch.observe(self.callback_seconds, seconds)

    @_never_raises
    def refusal(self, member_id: int) -> None:
        """A bidder refused a click (a 3xx or 4xx answer, or an address it may not use)."""
        self._child(self.refusals, self._member(member_id)).inc()

    @_never_raises
    def log_ready(self, ready: bool) -> None:
        """Whether this process's log accepts writes now (on Kafka: the broker is reachable)."""
        self.log_unavailable.set(0 if ready else 1)


def _declare(r: CollectorRegistry) -> Metrics:
    return Metrics(
        registry=r,
        clicks=Counter("clickbus_clicks", "Clicks recorded, by source and validity", ["source", "reason"], registry=r),
        impressions=Counter(
            "clickbus_impressions", "Impressions recorded, by source and validity", ["source", "reason"], registry=r
        ),
        insertions=Counter("clickbus_insertions", "Insertion requests, by outcome", ["outcome"], registry=r),
        # One histogram per path, its _count the number of events: each observation costs one sample
        # write fewer than a separate counter would (the redirect path is hot).
        append_seconds=Histogram(
            "clickbus_log_append_seconds",
            "Time until an append is durable (or fails), by topic and outcome",
            ["topic", "outcome"],
            buckets=APPEND_BUCKETS,
            registry=r,
        ),
        redirect_seconds=Histogram(
            "clickbus_redirect_seconds",
            "Time to answer GET /ck/{token}, by status",
            ["status"],
            buckets=REDIRECT_BUCKETS,
            registry=r,
        ),
        spool_records=Gauge(
            "clickbus_spool_records",
            "Records spooled on local disk, awaiting the broker",
            multiprocess_mode="livesum",
            registry=r,
        ),
        spool_age=Gauge(
            "clickbus_spool_oldest_age_seconds",
            "Age of the oldest spooled record",
            multiprocess_mode="livemax",
            registry=r,
        ),
        deliveries=Counter(
            "clickbus_deliveries",
            "Delivery attempts to bidders, by member and status",
            ["member", "status"],
            registry=r,
        ),
        retry_records=Gauge(
            "clickbus_retry_queue_records",
            "Clicks parked for a later delivery attempt",
            multiprocess_mode="livesum",
            registry=r,
        ),
        dead_letters=Counter("clickbus_dead_letters", "Clicks dead-lettered, by member", ["member"], registry=r),
        lag=Gauge(
            "clickbus_consumer_lag_records",
            "Records not yet committed by a consumer group",
            ["group", "topic", "partition"],
            multiprocess_mode="livemax",
            registry=r,
        ),
        breakers=Gauge(
            "clickbus_breaker_state",
            "Circuit breaker per bidder: 0 closed, 1 half-open, 2 open",
            ["member"],
            multiprocess_mode="livemax",
            registry=r,
        ),
        retention_lost_records=Counter(
            "clickbus_log_retention_lost_records",
            "Records the embedded log's retention deleted before a consumer group had consumed them",
            ["group", "topic"],
            registry=r,
        ),
        corrupt_records=Counter(
            "clickbus_log_corrupt_records",
            "Records of the embedded log lost to damaged bytes (each damaged stretch counted once per process)",
            ["topic"],
            registry=r,
        ),
        task_failures=Counter(
            "clickbus_task_failures",
            "Failures of supervised background tasks, each restarted or stopping the process (see /readyz)",
            ["task"],
            registry=r,
        ),
        metric_errors=Counter(
            "clickbus_metric_errors",
            "Metric samples that could not be recorded (the request they belonged to went on)",
            ["method"],
            registry=r,
        ),
        verdicts=Counter(
            "clickbus_verdicts",
            "The notifier's verdicts, by kind (click, impression) and reason (valid, or why invalid)",
            ["kind", "reason"],
            registry=r,
        ),
        callback_seconds=Histogram(
            "clickbus_click_to_callback_seconds",
            "Time from a click's record to its bidder's acknowledgement",
            buckets=CALLBACK_BUCKETS,
            registry=r,
        ),
        refusals=Counter(
            "clickbus_callback_refusals",
            "Clicks a bidder refused (3xx, 4xx, forbidden address)",
            ["member"],
            registry=r,
        ),
        # Unavailable rather than ready: a process that has not reported yet (its log still starting) reads 0,
        # which must not read as an outage.
        log_unavailable=Gauge(
            "clickbus_log_unavailable",
            "1 while a process's log cannot accept writes (on Kafka: the broker is unreachable); the highest",
            multiprocess_mode="livemax",
            registry=r,
        ),
    )


def create_metrics(registry: CollectorRegistry | None = None) -> Metrics:
    """Declare every metric on `registry` (a fresh one by default: tests get their own)."""
    registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
    return _declare(registry)


_default: list[Metrics] = []


def default_metrics() -> Metrics:
    """This process's metrics, declared on first use (after `use_multiprocess_dir`, when there is one)."""
    if not _default:
        _default.append(create_metrics())
        atexit.register(_default[0].flush)  # the last second's samples, in processes that end without a cleanup
    return _default[0]


def multiprocess_dir() -> Path | None:
    """The shared sample directory, when this process takes part in multiprocess mode."""
    path = os.environ.get(MULTIPROC_ENV)
    return Path(path) if path else None


def use_multiprocess_dir(path: Path, *, clean: bool) -> None:
    """Write this process's samples under `path` (emptied first when `clean`); call before any metric exists."""
    if clean and path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(path)
    choose_value_class()  # prometheus-client chose at import time; choose again now that the directory is known


def private_dir(owner_pid: int | None = None) -> Path:
    """The sample directory of the service whose `clickbus run` process is `owner_pid` (this one by default)."""
    memory = (Path("/dev/shm"), Path(os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}"))
    base = next((d for d in memory if d.is_dir() and os.access(d, os.W_OK)), Path(tempfile.gettempdir()))
    return base / f"{PRIVATE_PREFIX}{os.getuid()}-{owner_pid or os.getpid()}"


def use_private_dir() -> Path:
    """Take this process's own `private_dir`, emptied, removed at exit; remove those of dead processes."""
    path = private_dir()
    for stale in path.parent.glob(f"{PRIVATE_PREFIX}{os.getuid()}-*"):
        if stale != path and not _writers_alive(stale):
            shutil.rmtree(stale, ignore_errors=True)
    use_multiprocess_dir(path, clean=True)
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def _writers_alive(directory: Path) -> bool:
    """Whether the `clickbus run` that owns `directory`, or any process writing samples in it, still runs.

    prometheus-client's multiprocess mode wants a directory emptied only between runs of the service,
    never under a live process (whose next new series would open a file there); its files are named
    `<kind>_<pid>.db`.
    """
    owner = directory.name.rsplit("-", 1)[1]
    pids = {int(owner)} if owner.isdigit() else set()
    with contextlib.suppress(OSError):
        pids |= {int(f.stem.rsplit("_", 1)[1]) for f in directory.glob("*_*.db") if f.stem.rsplit("_", 1)[1].isdigit()}
    return any(_alive(pid) for pid in pids)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def mark_process_dead(pid: int) -> None:
    """Forget the live gauges of a process that has exited (its counters stay counted)."""
    path = multiprocess_dir()
    if path is not None:
        multiprocess.mark_process_dead(pid, str(path))  # type: ignore[no-untyped-call]


def render(metrics: Metrics) -> tuple[bytes, str]:
    """The text exposition of every process's samples (or this process's alone) and its content type."""
    metrics.flush()
    path = multiprocess_dir()
    if path is None:
        return generate_latest(metrics.registry), CONTENT_TYPE_LATEST
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, str(path))  # type: ignore[no-untyped-call]
    return generate_latest(registry), CONTENT_TYPE_LATEST
