"""Migration from the first embedded log (one SQLite file) to the segment log, at `clickbus run`."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import orjson
import pytest

from clickbus.errors import LogUnavailable
from clickbus.log import EmbeddedLog
from clickbus.log.migrate import LEGACY_NAME, legacy_log, migrate_into
from clickbus.notifier.dlq import replay_group
from tests.support.service import Service

GROUP = "clickbus-notifier"
GROUPS = (GROUP, replay_group(GROUP))
# What the SQLite adapter (clickbus/log/sqlite.py before #13) created and wrote: a table per topic,
# offsets from 1, headers as a JSON object of latin-1 strings, and one committed offset per group and topic.
OLD_SCHEMA = """
PRAGMA journal_mode=WAL;
CREATE TABLE consumer_offsets (grp TEXT NOT NULL, topic TEXT NOT NULL, next_offset INTEGER NOT NULL,
    PRIMARY KEY (grp, topic)) WITHOUT ROWID;
"""
OLD_TOPICS = ("clicks", "impressions", "deliveries", "dlq", "retry")


def write_old_log(path: Path, records: dict[str, int], committed: dict[tuple[str, str], int]) -> None:
    """An old log with `records[topic]` records per topic (values {"topic", "n"}) and the groups' commits."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as conn:
        conn.executescript(OLD_SCHEMA)
        for topic in OLD_TOPICS:
            conn.execute(
                f"CREATE TABLE topic_{topic} (offset INTEGER PRIMARY KEY, key BLOB NOT NULL, value BLOB NOT NULL,"
                " headers BLOB NOT NULL, ts_ms INTEGER NOT NULL)"
            )
            rows = [
                (b"k%d" % n, orjson.dumps({"topic": topic, "n": n}), b'{"kind":"click"}', 1_700_000_000_000 + n)
                for n in range(records.get(topic, 0))
            ]
            conn.executemany(f"INSERT INTO topic_{topic} (key, value, headers, ts_ms) VALUES (?, ?, ?, ?)", rows)
        conn.executemany(
            "INSERT INTO consumer_offsets VALUES (?, ?, ?)", [(g, t, n) for (g, t), n in committed.items()]
        )
    conn.close()


RECORDS = {"clicks": 5, "dlq": 2, "deliveries": 2}
# Old offsets start at 1: the notifier had finished clicks 1 and 2 (n = 0, 1); one dead letter was replayed.
COMMITTED = {(GROUP, "clicks"): 3, (replay_group(GROUP), "dlq"): 2, ("someone-else", "deliveries"): 3}
EXPECTED = {"clicks": [2, 3, 4], "dlq": [1], "deliveries": [0, 1], "impressions": [], "retry": []}


async def read_new(path: Path) -> dict[str, list[int]]:
    log = EmbeddedLog(path)
    found: dict[str, list[int]] = {}
    for topic in OLD_TOPICS:
        entries = [e async for e in log.read(topic, from_beginning=True, follow=False)]
        found[topic] = [int(orjson.loads(e.value)["n"]) for e in entries]
        assert all(e.header("kind") == b"click" for e in entries)
        assert [e.timestamp_ms for e in entries] == [1_700_000_000_000 + n for n in found[topic]]
    return found


async def test_unread_records_move_to_the_new_log_and_the_old_file_is_set_aside(tmp_path: Path) -> None:
    old = tmp_path / LEGACY_NAME
    write_old_log(old, RECORDS, COMMITTED)
    assert legacy_log(tmp_path, tmp_path / "log") == old
    shipped = await migrate_into(old, tmp_path / "log", GROUPS, 10.0)
    assert shipped == {topic: len(ns) for topic, ns in EXPECTED.items()}
    assert await read_new(tmp_path / "log") == EXPECTED
    assert not old.exists() and (tmp_path / (LEGACY_NAME + ".migrated")).is_file()
    assert legacy_log(tmp_path, tmp_path / "log") is None  # once only


def test_an_old_log_where_the_new_directory_should_be_is_refused_with_the_key(tmp_path: Path) -> None:
    write_old_log(tmp_path / LEGACY_NAME, RECORDS, COMMITTED)
    with pytest.raises(LogUnavailable, match=r"log\.embedded\.path"):
        legacy_log(tmp_path, tmp_path / LEGACY_NAME)


@pytest.mark.slow
async def test_clickbus_run_migrates_an_old_data_dir_before_serving(tmp_path: Path) -> None:
    write_old_log(tmp_path / "var" / LEGACY_NAME, RECORDS, COMMITTED)
    service = Service(tmp_path)
    await asyncio.to_thread(service.start)
    assert await asyncio.to_thread(service.stop) == 0, service.logs()
    assert not (tmp_path / "var" / LEGACY_NAME).exists()
    assert await read_new(tmp_path / "var" / "log") == EXPECTED
