"""The embedded log: one SQLite file in WAL mode, one table per topic.

A single writer thread owns the write connection and commits in groups: every
operation queued while the previous transaction was being fsync'd goes into the
next one, so many clicks share one fsync and each caller is answered as soon as
its own group is on disk. Readers use their own connections (WAL lets them run
beside the writer), so `clickbus tail` in another process sees new records.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import sys
import threading
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from clickbus.errors import LogUnavailable
from clickbus.log.port import AssignCallback, Entry, Headers, Health, Topic, TopicPartition

logger = logging.getLogger(__name__)

POLL_S = 0.05
SWITCH_INTERVAL_S = 0.0002
# Several worker processes write the same file: each waits up to this long for the write lock.
BUSY_TIMEOUT_S = 30.0
SCHEMA_ATTEMPTS = 50
_SCHEMA = """
CREATE TABLE IF NOT EXISTS consumer_offsets (
    grp TEXT NOT NULL, topic TEXT NOT NULL, next_offset INTEGER NOT NULL,
    PRIMARY KEY (grp, topic)
) WITHOUT ROWID;
"""


def _table(topic: str) -> str:
    if not topic.isidentifier():
        raise ValueError(f"bad topic name {topic!r}")
    return f"topic_{topic}"


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


@dataclass(slots=True)
class _Op:
    """One write for the writer thread, answered through `future` on the loop."""

    sql: str
    params: Sequence[Any]
    future: asyncio.Future[None] = field(repr=False)


class _Writer(threading.Thread):
    """Owns the write connection and commits one group of operations at a time.

    The loop side (`submit`, `_answer`, `close`) runs on the event loop thread:
    while a group is being committed, new operations gather in `pending` and go
    together as the next group, one transaction and one fsync for all of them.
    """

    def __init__(self, path: Path, loop: asyncio.AbstractEventLoop, max_batch: int, on_commit: Any) -> None:
        super().__init__(name="clickbus-log-writer", daemon=True)
        self.path = path
        self.loop = loop
        self.max_batch = max_batch
        self.on_commit = on_commit
        self.groups: queue.SimpleQueue[list[_Op] | None] = queue.SimpleQueue()
        self.pending: list[_Op] = []
        self.busy = False
        self.error: BaseException | None = None

    def submit(self, op: _Op) -> None:
        self.pending.append(op)
        if not self.busy:
            self._hand_over()

    def _hand_over(self) -> None:
        group, self.pending = self.pending[: self.max_batch], self.pending[self.max_batch :]
        self.busy = True
        self.groups.put(group)

    def close(self) -> None:
        """Commit what is pending, then stop."""
        while self.pending:
            self._hand_over()
        self.groups.put(None)

    def run(self) -> None:
        conn = _connect(self.path)
        try:
            while (group := self.groups.get()) is not None:
                self._commit(conn, group)
        finally:
            conn.close()

    def _commit(self, conn: sqlite3.Connection, group: list[_Op]) -> None:
        statements: dict[str, list[Sequence[Any]]] = {}
        for op in group:
            statements.setdefault(op.sql, []).append(op.params)
        try:
            # IMMEDIATE takes the write lock up front, under the busy timeout; a deferred BEGIN could
            # meet another process's commit between its read and its write and fail at once.
            conn.execute("BEGIN IMMEDIATE")
            for sql, rows in statements.items():
                conn.executemany(sql, rows)
            conn.execute("COMMIT")
            self.error = None
        except sqlite3.Error as exc:
            self.error = exc
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        self.loop.call_soon_threadsafe(self._answer, group, self.error)

    def _answer(self, group: list[_Op], error: BaseException | None) -> None:
        self.busy = False
        for op in group:
            if op.future.done():
                continue
            if error is None:
                op.future.set_result(None)
            else:
                op.future.set_exception(LogUnavailable(f"embedded log write failed: {error}"))
        if self.pending:
            self._hand_over()
        if error is None:
            self.on_commit()


class _Wakeup:
    """Lets in-process readers wait for the next commit instead of polling."""

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[None]] = []

    def fire(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self, timeout: float) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(waiter, timeout)


class EmbeddedLog:
    """The log port on a local SQLite file."""

    def __init__(self, path: Path, *, max_batch: int = 1024, topics: Sequence[str] = tuple(Topic)) -> None:
        self.path = path
        self.max_batch = max_batch
        self.topics = tuple(topics)
        self._writer: _Writer | None = None
        self._wakeup = _Wakeup()
        self._stopping = False

    async def start(self) -> None:
        # The writer thread needs the GIL briefly before and after each fsync. A busy event
        # loop would make it wait the default 5 ms switch interval every time, which caps
        # throughput at (connections / 5 ms); a short interval lets groups commit promptly.
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(self._create_schema_retrying)
        self._writer = _Writer(self.path, asyncio.get_running_loop(), self.max_batch, self._wakeup.fire)
        self._writer.start()

    def _create_schema_retrying(self) -> None:
        # Workers starting together race to switch a new file to WAL, which needs it alone for a moment.
        for attempt in range(SCHEMA_ATTEMPTS):
            try:
                return self._create_schema()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == SCHEMA_ATTEMPTS - 1:
                    raise LogUnavailable(f"embedded log cannot be opened: {exc}") from exc
                time.sleep(0.05 + 0.05 * attempt)

    def _create_schema(self) -> None:
        conn = _connect(self.path)
        try:
            conn.executescript(_SCHEMA)
            for topic in self.topics:
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {_table(topic)} ("
                    " offset INTEGER PRIMARY KEY, key BLOB NOT NULL, value BLOB NOT NULL,"
                    " headers BLOB NOT NULL, ts_ms INTEGER NOT NULL)"
                )
        finally:
            conn.close()

    async def stop(self, timeout: float) -> None:
        """Commit what is queued and stop the writer, waiting at most `timeout` seconds."""
        self._stopping = True
        writer, self._writer = self._writer, None
        if writer is None:
            return
        writer.close()
        await asyncio.to_thread(writer.join, timeout)
        if writer.is_alive():
            logger.error("embedded log writer did not stop within %.1fs", timeout)

    @property
    def health(self) -> Health:
        writer = self._writer
        if writer is None or not writer.is_alive():
            return Health(False, "embedded log is not running")
        if writer.error is not None:
            return Health(False, f"embedded log write failed: {writer.error}")
        return Health(True)

    def _submit(self, sql: str, params: Sequence[Any]) -> asyncio.Future[None]:
        writer = self._writer
        if writer is None or self._stopping:
            raise LogUnavailable("embedded log is not running")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        writer.submit(_Op(sql, params, future))
        return future

    async def append(self, topic: str, key: bytes, value: bytes, headers: Headers = ()) -> None:
        sql = f"INSERT INTO {_table(topic)} (key, value, headers, ts_ms) VALUES (?, ?, ?, ?)"
        await self._submit(sql, (key, value, _pack_headers(headers), time.time_ns() // 1_000_000))

    async def commit_offsets(self, group: str, offsets: Mapping[str, int]) -> None:
        sql = (
            "INSERT INTO consumer_offsets (grp, topic, next_offset) VALUES (?, ?, ?)"
            " ON CONFLICT (grp, topic) DO UPDATE SET next_offset = excluded.next_offset"
        )
        await asyncio.gather(*(self._submit(sql, (group, topic, n)) for topic, n in offsets.items()))

    async def read(self, topic: str, *, from_beginning: bool, follow: bool) -> AsyncIterator[Entry]:
        reader = _Reader(self.path, topic)
        try:
            position = 0 if from_beginning else await reader.end()
            while True:
                entries = await reader.batch(position, 500)
                for entry in entries:
                    yield entry
                if entries:
                    position = entries[-1].offset + 1
                elif not follow:
                    return
                else:
                    await self._wakeup.wait(POLL_S * 4)
        finally:
            reader.close()

    def consumer(
        self, topics: Sequence[str], group: str, *, on_assign: AssignCallback | None = None
    ) -> EmbeddedConsumer:
        return EmbeddedConsumer(self, topics, group, on_assign)

    async def wait_for_append(self, timeout: float) -> None:
        await self._wakeup.wait(timeout)


class _Reader:
    """A read-only connection on one topic table, used from worker threads one call at a time."""

    def __init__(self, path: Path, topic: str) -> None:
        self.path = path
        self.table = _table(topic)
        self.topic = topic
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
        return self._conn

    def _batch(self, position: int, limit: int) -> list[Entry]:
        with self._lock:
            rows = (
                self._connection()
                .execute(
                    f"SELECT offset, key, value, headers, ts_ms FROM {self.table}"
                    " WHERE offset >= ? ORDER BY offset LIMIT ?",
                    (position, limit),
                )
                .fetchall()
            )
        return [Entry(self.topic, 0, o, k, v, _unpack_headers(h), ts) for o, k, v, h, ts in rows]

    async def batch(self, position: int, limit: int) -> list[Entry]:
        return await asyncio.to_thread(self._batch, position, limit)

    def _end(self) -> int:
        with self._lock:
            (top,) = self._connection().execute(f"SELECT COALESCE(MAX(offset), 0) FROM {self.table}").fetchone()
        return int(top) + 1

    async def end(self) -> int:
        return await asyncio.to_thread(self._end)

    def _committed(self, group: str) -> int:
        with self._lock:
            row = (
                self._connection()
                .execute("SELECT next_offset FROM consumer_offsets WHERE grp = ? AND topic = ?", (group, self.topic))
                .fetchone()
            )
        return int(row[0]) if row else 0

    async def committed(self, group: str) -> int:
        return await asyncio.to_thread(self._committed, group)

    def _behind(self, group: str) -> int:
        with self._lock:
            (count,) = (
                self._connection()
                .execute(
                    f"SELECT COUNT(*) FROM {self.table} WHERE offset >= COALESCE("
                    "(SELECT next_offset FROM consumer_offsets WHERE grp = ? AND topic = ?), 0)",
                    (group, self.topic),
                )
                .fetchone()
            )
        return int(count)

    async def behind(self, group: str) -> int:
        """Records of the topic at or past the group's committed offset."""
        return await asyncio.to_thread(self._behind, group)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class EmbeddedConsumer:
    """A consumer group member on the embedded log: one partition per topic, always assigned."""

    def __init__(self, log: EmbeddedLog, topics: Sequence[str], group: str, on_assign: AssignCallback | None) -> None:
        self.log = log
        self.group = group
        self.on_assign = on_assign
        self._readers = [_Reader(log.path, topic) for topic in topics]
        self._positions: dict[str, int] = {}

    async def start(self) -> None:
        for reader in self._readers:
            self._positions[reader.topic] = await reader.committed(self.group)
        if self.on_assign is not None:
            await self.on_assign([(reader.topic, 0) for reader in self._readers])

    async def stop(self, timeout: float) -> None:
        for reader in self._readers:
            reader.close()

    async def fetch(self, *, max_records: int, timeout_s: float) -> list[Entry]:
        deadline = time.monotonic() + timeout_s
        while True:
            entries: list[Entry] = []
            for reader in self._readers:
                got = await reader.batch(self._positions[reader.topic], max_records - len(entries))
                if got:
                    self._positions[reader.topic] = got[-1].offset + 1
                    entries += got
                if len(entries) >= max_records:
                    break
            remaining = deadline - time.monotonic()
            if entries or remaining <= 0:
                return entries
            await self.log.wait_for_append(min(remaining, POLL_S))

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        await self.log.commit_offsets(self.group, {topic: offset for (topic, _), offset in offsets.items()})

    def seek(self, topic: str, offset: int) -> None:
        self._positions[topic] = offset

    async def lag(self) -> dict[TopicPartition, int]:
        """Records per topic past the group's committed offset."""
        return {(reader.topic, 0): await reader.behind(self.group) for reader in self._readers}


def _pack_headers(headers: Headers) -> bytes:
    return orjson.dumps({k: v.decode("latin-1") for k, v in headers}) if headers else b"{}"


def _unpack_headers(raw: bytes) -> tuple[tuple[str, bytes], ...]:
    return tuple((k, v.encode("latin-1")) for k, v in orjson.loads(raw).items())
