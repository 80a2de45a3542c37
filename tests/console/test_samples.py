"""The console's figures: totals as /metrics renders them, rates between samples, latencies of the last seconds."""

from __future__ import annotations

from pathlib import Path

import pytest

from clickbus.console.samples import MB, WINDOW_S, Sampler, log_disk
from clickbus.metrics import BreakerState, Metrics, create_metrics, render
from clickbus.status import parse, quantile
from tests.support.configs import build_config


@pytest.fixture
def metrics() -> Metrics:
    made = create_metrics()
    made.label_members([7, 8])
    return made


def record_traffic(metrics: Metrics) -> None:
    for reason, n in ((None, 7), ("duplicate", 2), ("bot", 1)):
        for _ in range(n):
            metrics.verdict("click", reason)
    metrics.verdict("impression", None)
    for seconds in (0.0004, 0.003, 0.003, 0.03):
        metrics.redirect(302, seconds)
    metrics.callback_latency(0.2)
    for status in ("delivered", "delivered", "retry", "parked"):
        metrics.delivery(7, status)
    metrics.dead_letter(8)
    metrics.refusal(8)
    metrics.breaker(7, BreakerState.CLOSED)
    metrics.breaker(8, BreakerState.OPEN)
    metrics.spool(3, 1.0)
    metrics.consumer_lag("clickbus-notifier", "clicks", 0, 4)
    metrics.log_ready(True)


def test_totals_are_what_metrics_renders(tmp_path: Path, metrics: Metrics) -> None:
    record_traffic(metrics)
    sampler = Sampler(build_config(tmp_path), metrics)
    sampler.tick()
    latest = sampler.latest
    scraped = parse(render(metrics)[0].decode(), 0.0)
    verdicts = scraped.series("clickbus_verdicts_total")
    rendered = {dict(labels)["reason"]: n for labels, n in verdicts.items() if dict(labels)["kind"] == "click"}
    assert latest["clicks"] == rendered == {"valid": 7, "bot": 1, "duplicate": 2}
    assert list(latest["clicks"]) == ["valid", "bot", "duplicate"]  # valid first, then reasons by name
    assert latest["impressions"] == {"valid": 1.0}
    assert latest["redirect_p50_ms"] == quantile(scraped, "clickbus_redirect_seconds", 0.5) * 1000 == 5.0  # type: ignore[operator]
    assert latest["redirect_p99_ms"] == quantile(scraped, "clickbus_redirect_seconds", 0.99) * 1000 == 50.0  # type: ignore[operator]
    assert latest["callback_p99_ms"] == 250.0
    assert latest["bidders"] == {
        "7": {"delivered": 2.0, "retried": 1.0, "held": 1.0, "refused": 0.0, "dead_lettered": 0.0, "breaker": "closed"},
        "8": {"delivered": 0.0, "retried": 0.0, "held": 0.0, "refused": 1.0, "dead_lettered": 1.0, "breaker": "open"},
    }
    assert (latest["lag"], latest["spool_records"], latest["log_ready"]) == (4.0, 3.0, True)


def test_rates_per_second_and_latencies_of_the_window(tmp_path: Path, metrics: Metrics) -> None:
    sampler = Sampler(build_config(tmp_path), metrics)
    assert sampler.tick(now=1000.0) is None  # a rate needs two collections
    record_traffic(metrics)
    sample = sampler.tick(now=1002.0)
    assert sample is not None
    assert sample["clicks"] == {"valid": 3.5, "duplicate": 1.0, "bot": 0.5}
    assert sample["callbacks"] == {"delivered": 1.0, "retried": 0.5, "held": 0.5, "refused": 0.5, "dead_lettered": 0.5}
    assert (sample["redirect_p50_ms"], sample["redirect_p99_ms"], sample["callback_p99_ms"]) == (5.0, 50.0, 250.0)
    quiet = sampler.tick(now=1002.0 + WINDOW_S + 1)  # nothing new since: no latency to show
    assert quiet is not None and quiet["redirect_p99_ms"] is None and quiet["clicks"]["valid"] == 0
    assert [s["t"] for s in sampler.ring] == [1002.0, 1002.0 + WINDOW_S + 1]


def test_log_disk_against_the_retention_bound(tmp_path: Path) -> None:
    config = build_config(tmp_path, log={"embedded": {"retention_mb": 10, "segment_mb": 2}})
    for partition, size in (("clicks-0", 1000), ("clicks-1", 500), ("deliveries-0", 0)):
        (config.log_path / partition).mkdir(parents=True)
        (config.log_path / partition / "00000000000000000000.log").write_bytes(b"x" * size)
    (config.log_path / "offsets.sqlite3").write_bytes(b"o" * 24)
    disk = log_disk(config)
    assert (disk.used, disk.bound) == (1524, 3 * 12 * MB)
    assert log_disk(build_config(tmp_path / "none")).used == 0


def test_the_log_reads_unavailable_once_a_process_says_so(tmp_path: Path, metrics: Metrics) -> None:
    sampler = Sampler(build_config(tmp_path), metrics)
    sampler.tick()
    assert sampler.latest["log_ready"] is True  # nobody has reported an outage (a starting process reads 0)
    metrics.log_ready(False)
    sampler.tick()
    assert sampler.latest["log_ready"] is False
