"""The metrics: each method moves the series it names; several processes add up in /metrics."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from clickbus.metrics import MULTIPROC_ENV, BreakerState, Metrics, create_metrics, render


def sample(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return None


CASES: list[tuple[Callable[[Metrics], None], str, dict[str, str], float]] = [
    (lambda m: m.click("redirect", None), "clickbus_clicks_total", {"source": "redirect", "reason": "valid"}, 1),
    (lambda m: m.click("beacon", "expired"), "clickbus_clicks_total", {"source": "beacon", "reason": "expired"}, 1),
    (lambda m: m.impression("pixel", None), "clickbus_impressions_total", {"source": "pixel", "reason": "valid"}, 1),
    (lambda m: m.insertion("ok"), "clickbus_insertions_total", {"outcome": "ok"}, 1),
    (
        lambda m: m.log_append("clicks", 0.003, True),
        "clickbus_log_append_seconds_count",
        {"topic": "clicks", "outcome": "ok"},
        1,
    ),
    (
        lambda m: m.log_append("clicks", 0.003, True),
        "clickbus_log_append_seconds_bucket",
        {"topic": "clicks", "outcome": "ok", "le": "0.005"},
        1,
    ),
    (
        lambda m: m.log_append("clicks", 0.5, False),
        "clickbus_log_append_seconds_count",
        {"topic": "clicks", "outcome": "error"},
        1,
    ),
    (lambda m: m.redirect(302, 0.0004), "clickbus_redirect_seconds_bucket", {"status": "302", "le": "0.0005"}, 1),
    (lambda m: m.redirect(400, 0.0004), "clickbus_redirect_seconds_count", {"status": "400"}, 1),
    (lambda m: m.spool(12, 3.5), "clickbus_spool_records", {}, 12),
    (lambda m: m.spool(12, 3.5), "clickbus_spool_oldest_age_seconds", {}, 3.5),
    (lambda m: m.delivery(7, "delivered"), "clickbus_deliveries_total", {"member": "7", "status": "delivered"}, 1),
    (lambda m: m.retry_depth(4), "clickbus_retry_queue_records", {}, 4),
    (lambda m: m.dead_letter(7), "clickbus_dead_letters_total", {"member": "7"}, 1),
    (
        lambda m: m.consumer_lag("notifier", "clicks", 0, 42),
        "clickbus_consumer_lag_records",
        {"group": "notifier", "topic": "clicks", "partition": "0"},
        42,
    ),
    (lambda m: m.breaker(7, BreakerState.OPEN), "clickbus_breaker_state", {"member": "7"}, 2),
]


@pytest.mark.parametrize(("record", "name", "labels", "expected"), CASES)
def test_each_method_moves_its_series(
    record: Callable[[Metrics], None], name: str, labels: dict[str, str], expected: float
) -> None:
    metrics = create_metrics()
    metrics.label_members([7])
    assert sample(render(metrics)[0].decode(), name, **labels) in (None, 0.0)
    record(metrics)
    assert sample(render(metrics)[0].decode(), name, **labels) == expected


def test_only_configured_members_get_a_series_of_their_own() -> None:
    """Anyone can send a click for any member id: 300 strangers must not make 300 series."""
    metrics = create_metrics()
    metrics.label_members([13])
    for member_id in range(1000, 1300):
        metrics.delivery(member_id, "unknown_member")
        metrics.dead_letter(member_id)
    metrics.delivery(13, "delivered")
    text = render(metrics)[0].decode()
    members = {
        s.labels["member"]
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if "member" in s.labels
    }
    assert members == {"13", "other"}
    assert sample(text, "clickbus_deliveries_total", member="other", status="unknown_member") == 300
    assert sample(text, "clickbus_dead_letters_total", member="other") == 300


def test_bound_children_count_every_call() -> None:
    metrics = create_metrics()
    for _ in range(5):
        metrics.click("redirect", None)
    assert sample(render(metrics)[0].decode(), "clickbus_clicks_total", source="redirect", reason="valid") == 5


WRITER = """
import os, sys
from pathlib import Path
from clickbus.metrics import BreakerState, create_metrics, use_multiprocess_dir
use_multiprocess_dir(Path(sys.argv[1]), clean=False)
m = create_metrics()
for _ in range(int(sys.argv[2])):
    m.click("redirect", None)
m.spool(int(sys.argv[2]), 1.0)
m.flush()
print(os.getpid())
"""


def test_processes_add_up_and_dead_ones_leave_live_gauges(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from clickbus import metrics as module

    directory = tmp_path / "metrics"
    directory.mkdir()
    pids = [
        int(
            subprocess.run(
                [sys.executable, "-c", WRITER, str(directory), str(n)], check=True, capture_output=True, text=True
            ).stdout
        )
        for n in (3, 4)
    ]
    monkeypatch.setenv(MULTIPROC_ENV, str(directory))
    text = render(create_metrics())[0].decode()
    assert sample(text, "clickbus_clicks_total", source="redirect", reason="valid") == 7
    assert sample(text, "clickbus_spool_records") == 7
    module.mark_process_dead(pids[0])
    text = render(create_metrics())[0].decode()
    assert sample(text, "clickbus_clicks_total", source="redirect", reason="valid") == 7  # counters stay counted
    assert sample(text, "clickbus_spool_records") == 4  # only the live process's spool


@pytest.mark.parametrize("values", [[0.0004, 0.0005, 0.003, 0.003, 7.0], [0.0], [2.5, 2.5000001, 1e-9]])
def test_batched_observations_render_as_observe_would(values: list[float]) -> None:
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    from clickbus.metrics import REDIRECT_BUCKETS

    metrics = create_metrics()
    reference = CollectorRegistry()
    direct = Histogram("clickbus_redirect_seconds", "x", ["status"], buckets=REDIRECT_BUCKETS, registry=reference)
    for value in values:
        metrics.redirect(302, value)
        direct.labels("302").observe(value)

    def buckets(text: str) -> list[str]:
        lines = text.splitlines()
        return sorted(x for x in lines if x.startswith("clickbus_redirect_seconds_") and "_created" not in x)

    assert buckets(render(metrics)[0].decode()) == buckets(generate_latest(reference).decode())


def test_hot_path_samples_wait_for_the_flush() -> None:
    metrics = create_metrics()
    metrics.click("redirect", None)  # the first call flushes at once
    metrics.click("redirect", None)
    metrics.click("redirect", None)
    direct = metrics.clicks.labels("redirect", "valid")._value.get()
    assert direct == 1  # the other two are still summed in the process
    metrics.flush()
    assert metrics.clicks.labels("redirect", "valid")._value.get() == 3
