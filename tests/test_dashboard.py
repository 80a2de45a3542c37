"""The Grafana dashboard: valid JSON, and every metric it queries is one clickbus declares."""

from __future__ import annotations

import json
import re
from pathlib import Path

from clickbus.metrics import create_metrics

DASHBOARD = Path(__file__).resolve().parents[1] / "conf" / "grafana-dashboard.json"
SUFFIXES = ("_bucket", "_count", "_sum", "_total")


def queried_metrics() -> set[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert exprs
    names = set()
    for name in re.findall(r"\bclickbus_[a-z_]+", " ".join(exprs)):
        for suffix in SUFFIXES:
            name = name.removesuffix(suffix)
        names.add(name)
    return names


def test_dashboard_queries_only_declared_metrics() -> None:
    declared = {family.name for family in create_metrics().registry.collect()}
    assert queried_metrics() <= declared
    # traffic, validity, redirect latency, delivery health, lag and spool are all on it
    assert {
        "clickbus_clicks",
        "clickbus_verdicts",  # the validity mix is the notifier's verdicts, not the edge's flags
        "clickbus_redirect_seconds",
        "clickbus_deliveries",
        "clickbus_breaker_state",
        "clickbus_consumer_lag_records",
        "clickbus_spool_records",
    } <= queried_metrics()
