"""Moving from the first embedded log (one SQLite file, `log.sqlite3`) to the segment log, once.

`clickbus run` finds the old file in `data_dir`, appends every record its consumers had not
yet committed (per the notifier group, and its dead-letter replay group for `dlq`; all of a
topic nobody consumed) to the new log with its original time, then renames the file aside
(`log.sqlite3.migrated`). Only this reading of the old format is kept.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import orjson

from clickbus.errors import LogUnavailable
from clickbus.log.embedded import EmbeddedLog

logger = logging.getLogger(__name__)

LEGACY_NAME = "log.sqlite3"
MIGRATED_SUFFIX = ".migrated"
BATCH = 1000
OldRecord = tuple[bytes, bytes, tuple[tuple[str, bytes], ...], int]


def _topics(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'topic\\_%' ESCAPE '\\'")
    return sorted(str(name)[len("topic_") :] for (name,) in rows)


def _unread_from(conn: sqlite3.Connection, topic: str, groups: tuple[str, ...]) -> int:
    marks = ",".join("?" * len(groups))
    (offset,) = conn.execute(
        f"SELECT COALESCE(MAX(next_offset), 0) FROM consumer_offsets WHERE topic = ? AND grp IN ({marks})",
        (topic, *groups),
    ).fetchone()
    return int(offset)


def _records(conn: sqlite3.Connection, topic: str, start: int) -> Iterator[OldRecord]:
    rows = conn.execute(
        f"SELECT key, value, headers, ts_ms FROM topic_{topic} WHERE offset >= ? ORDER BY offset", (start,)
    )
    for key, value, headers, ts_ms in rows:
        unpacked = tuple((k, v.encode("latin-1")) for k, v in orjson.loads(headers).items())
        yield bytes(key), bytes(value), unpacked, int(ts_ms)


async def _ship(log: EmbeddedLog, topic: str, records: Iterator[OldRecord]) -> int:
    shipped = 0
    batch: list[OldRecord] = []
    for record in records:
        batch.append(record)
        if len(batch) == BATCH:
            shipped += await _append_all(log, topic, batch)
            batch = []
    return shipped + await _append_all(log, topic, batch)


async def _append_all(log: EmbeddedLog, topic: str, batch: list[OldRecord]) -> int:
    if not batch:
        return 0
    (key, value, headers, ts_ms), rest = batch[0], batch[1:]
    await log.append_at(topic, key, value, headers, ts_ms)  # the partition is open: the rest queue in order
    await asyncio.gather(*(log.append_at(topic, k, v, h, t) for k, v, h, t in rest))
    return len(batch)


def legacy_log(data_dir: Path, log_path: Path) -> Path | None:
    """The old SQLite log in `data_dir` still to migrate, if there is one."""
    old = data_dir / LEGACY_NAME
    if not old.is_file():
        return None
    if old == log_path:
        raise LogUnavailable(
            f"log.embedded.path: {log_path} is the old SQLite log; point log.embedded.path at a new directory"
            ' (the default is "log") and the old log is migrated into it at start'
        )
    return old


async def migrate_into(old: Path, log_path: Path, groups: tuple[str, ...], stop_timeout_s: float) -> dict[str, int]:
    """Migrate `old` into a new embedded log at `log_path` (run before any worker writes to it)."""
    log = EmbeddedLog(log_path)
    await log.start()
    try:
        return await migrate(old, log, groups)
    finally:
        await log.stop(stop_timeout_s)


async def migrate(old: Path, log: EmbeddedLog, groups: tuple[str, ...]) -> dict[str, int]:
    """Ship the unread records of the SQLite log at `old` into the started `log`; rename `old` aside."""
    shipped: dict[str, int] = {}
    with closing(sqlite3.connect(f"file:{old}?mode=ro", uri=True)) as conn:
        for topic in _topics(conn):
            start = _unread_from(conn, topic, groups)
            shipped[topic] = await _ship(log, topic, _records(conn, topic, start))
            logger.info("migrated %d unread %s records from %s", shipped[topic], topic, old)
    for suffix in ("", "-wal", "-shm"):
        part = old.with_name(old.name + suffix)
        if part.exists():
            part.rename(part.with_name(part.name + MIGRATED_SUFFIX))
    return shipped
