"""The embedded report store: one SQLite file in data_dir, in WAL mode.

One process writes it (the reporter), on one thread of its own so the event loop never waits on
the disk; any process reads it (`clickbus report`, every worker's `/v1/reports`) through its own
connection, which WAL lets run beside the writer.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from clickbus.log.port import TopicPartition
from clickbus.reports import sqlite_sql as sql
from clickbus.reports.port import (
    Batch,
    Event,
    Fenced,
    Query,
    RawRow,
    StoreUnavailable,
    add_events,
    by_day,
    day_span,
    firsts,
    forget_below,
    neighbours,
)
from clickbus.reports.schema import DIMENSIONS

T = TypeVar("T")
FETCH_ROWS = 1000
SEEN_CHUNK = 500  # keys per look-up: well under SQLite's bound on a statement's parameters
BUSY_TIMEOUT_MS = 10_000


class SQLiteStore:
    """The `Store` port on a SQLite file."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only  # a reader only: no writer thread, no migrations
        self._writer: ThreadPoolExecutor | None = None
        self._db: sqlite3.Connection | None = None

    async def start(self) -> None:
        if self.read_only:
            return
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="clickbus-reports-db")
        await self._on_writer(self._open)

    async def stop(self) -> None:
        if self._writer is None:
            return
        await self._on_writer(self._close)
        self._writer.shutdown(wait=True)
        self._writer = None

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: durable across a process kill, as exactly-once needs
        self._db = db
        self._migrate(db)

    @staticmethod
    def _migrate(db: sqlite3.Connection) -> None:
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(sql.CREATE_MIGRATIONS)
            applied = {version for (version,) in db.execute(sql.APPLIED)}
            for version, script in sql.MIGRATIONS:
                if version not in applied:
                    for statement in filter(str.strip, script.split(";")):
                        db.execute(statement)
                    db.execute(sql.RECORD_MIGRATION, (version,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    async def _on_writer(self, work: Any, *args: Any) -> Any:
        if self._writer is None:
            raise StoreUnavailable("report store not started")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._writer, work, *args)
        except sqlite3.OperationalError as exc:
            raise StoreUnavailable(f"report store: {exc}") from exc

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreUnavailable("report store not started")
        return self._db

    async def positions(self, group: str) -> dict[TopicPartition, int]:
        rows = await self._on_writer(lambda: self._connection().execute(sql.POSITIONS, (group,)).fetchall())
        return {(topic, part): next_ for topic, part, next_ in rows}

    async def apply(self, batch: Batch) -> int:
        added: int = await self._on_writer(self._apply, batch)
        return added

    def _apply(self, batch: Batch) -> int:
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            for move in batch.moves:
                if move.expected is None:
                    cursor = db.execute(sql.INSERT_POSITION, (batch.group, move.topic, move.partition, move.next))
                else:
                    values = (move.next, batch.group, move.topic, move.partition, move.expected)
                    cursor = db.execute(sql.MOVE_POSITION, values)
                if cursor.rowcount != 1:
                    raise Fenced(f"{move.topic}[{move.partition}] moved past {move.expected} under this reporter")
            fresh = self._see_all(db, firsts(batch.events))
            rows = add_events(fresh)
            db.executemany(sql.ADD_ROW, [(*key, *values) for key, values in rows.items()])
            db.executemany(sql.ADD_DAY, [(*key, *values) for key, values in by_day(rows).items()])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return len(fresh)

    @staticmethod
    def _see_all(db: sqlite3.Connection, events: list[Event]) -> list[Event]:
        """The events whose key (or the same record's a generation before or after) is not yet seen; now seen.

        One look-up per `SEEN_CHUNK` keys and one insert for all, where a statement per event cost more than
        the rest of the transaction. Exact, since `firsts` left no two events of one record in a batch.
        """
        wanted: dict[bytes, None] = {}  # an ordered set: the keys and their neighbours, each once
        for event in events:
            before, after = neighbours(event.seen)
            wanted[event.seen] = wanted[before] = wanted[after] = None
        keys = list(wanted)
        found: set[bytes] = set()
        for start in range(0, len(keys), SEEN_CHUNK):
            chunk = keys[start : start + SEEN_CHUNK]
            found.update(k for (k,) in db.execute(sql.seen_among(len(chunk)), chunk))
        fresh = [e for e in events if e.seen not in found and not found.intersection(neighbours(e.seen))]
        db.executemany(sql.SEE_MANY, [(event.seen,) for event in fresh])
        return fresh

    async def query(self, query: Query) -> AsyncIterator[RawRow]:
        if not self.path.exists():  # no reporter has counted anything here yet: an empty report, not an error
            return
        params = query_params(query)
        db: sqlite3.Connection | None = None
        try:  # any database error, opening included (a file that is not a database, a directory): a 503, never a 500
            db = await asyncio.to_thread(self._reader)
            statement = sql.query(frozenset(name for name, _ in query.filters))
            cursor = await asyncio.to_thread(db.execute, statement, params)
            while rows := await asyncio.to_thread(cursor.fetchmany, FETCH_ROWS):
                for row in rows:
                    yield row
        except sqlite3.DatabaseError as exc:
            raise StoreUnavailable(f"report store: {exc}") from exc
        finally:
            if db is not None:
                await asyncio.to_thread(db.close)

    def _reader(self) -> sqlite3.Connection:
        db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        return db

    async def maintain(self, *, fold_before: int, delete_before: int) -> None:
        await self._on_writer(self._maintain, fold_before, delete_before)

    def _maintain(self, fold_before: int, delete_before: int) -> None:
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(sql.FOLD, (fold_before,))
            db.execute(sql.DROP_FOLDED, (fold_before,))
            db.execute(sql.DELETE_OLD, (delete_before,))
            db.execute(sql.DELETE_OLD_DAYS, (delete_before,))
            if (below := forget_below(db.execute(sql.NEWEST_SEEN).fetchone()[0])) is not None:
                db.execute(sql.FORGET, (below,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise


def query_params(query: Query) -> dict[str, object]:
    """The named parameters of `sqlite_sql.query` (and, renamed, of the PostgreSQL one)."""
    day_since, day_until = day_span(query)
    params: dict[str, object] = {"grain": query.grain, "since": query.since, "until": query.until}
    params |= {"day_since": day_since, "day_until": day_until}
    filters = dict(query.filters)
    for name in DIMENSIONS:
        params[f"g_{name}"] = name in query.by
        params[f"f_{name}"] = filters.get(name)
    return params
