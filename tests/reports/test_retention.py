"""Retention: hourly rows folded into days after `reports.hourly_days`, rows gone after `reports.retention_months`."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from clickbus.log import open_log
from clickbus.reports.counting import seen_key
from clickbus.reports.port import Batch, Event, Move, Query
from clickbus.reports.schema import DIMENSIONS
from clickbus.reports.service import Reporter
from clickbus.reports.sqlite import SQLiteStore
from clickbus.reports.window import kept_since
from tests.support.configs import build_config

NOW = datetime(2026, 12, 3, 13, 30, tzinfo=UTC).timestamp()


def at(days_ago: float) -> int:
    return int(NOW - days_ago * 86400) // 3600 * 3600


def click(name: str, hour: int) -> Event:
    dims = (13, 0, 0, 5, "", "", "mobile", "redirect", 0)
    return Event(seen_key(name, 0, 1), (hour, *dims, ""), (0, 1, 0, 0, 0))


async def test_old_hours_fold_into_days_and_rows_past_retention_go(tmp_path: Path) -> None:
    config = build_config(tmp_path, reports={"hourly_days": 35, "retention_months": 13})
    store = SQLiteStore(config.reports_path)
    await store.start()
    hours = {"recent": at(1), "old-a": at(40), "old-b": at(40) + 3600, "ancient": at(400)}
    await store.apply(Batch("g", [Move("verdicts", 0, None, 4)], [click(n, h) for n, h in hours.items()]))
    await Reporter(config, open_log(config), store).maintain(NOW)
    rows = [row async for row in store.query(Query(0, 2**40, (), "hour"))]
    clicks_at = 2 + len(DIMENSIONS) + 1
    assert [(row[0], row[clicks_at]) for row in rows] == [(at(40) - at(40) % 86400, 2), (hours["recent"], 1)]
    assert kept_since(NOW, 13) == datetime(2025, 11, 1, tzinfo=UTC).timestamp()
    await store.stop()
