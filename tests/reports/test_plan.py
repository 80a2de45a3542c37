"""How the SQLite store reads a long report: whole days from the day rows, by the member index."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from clickbus.reports import sqlite_sql as sql
from clickbus.reports.port import Query
from clickbus.reports.sqlite import SQLiteStore, query_params

DAY = 1_796_428_800


async def test_a_members_90_day_report_by_day_searches_the_day_rows_by_member(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "reports.sqlite3")
    await store.start()
    await store.stop()
    query = Query(DAY - 90 * 86400 + 3600, DAY + 7200, ("member",), "day", (("member", 7),))
    db = sqlite3.connect(tmp_path / "reports.sqlite3")
    try:
        plan = [
            row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql.query(frozenset({'member'}))}", query_params(query))
        ]
    finally:
        db.close()
    searches = [step for step in plan if step.startswith(("SEARCH", "SCAN rows", "SCAN days"))]
    # not `SEARCH rows USING PRIMARY KEY (hour>? AND hour<?)`: every member's rows in the range, filtered one by one
    assert searches == [
        "SEARCH rows USING INDEX rows_member_hour (member=? AND hour>? AND hour<?)",
        "SEARCH days USING INDEX days_member_hour (member=? AND hour>? AND hour<?)",
        "SEARCH rows USING INDEX rows_member_hour (member=? AND hour>? AND hour<?)",
    ], plan
