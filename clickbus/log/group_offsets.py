"""Committed offsets of the embedded log's consumer groups: a small SQLite file beside the partitions.

Commits are rare (every `notifier.commit_interval_s` at most) and may come from several
processes at once (the notifier, `clickbus dlq replay`), which SQLite serialises for us.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Mapping
from pathlib import Path

from clickbus.log.port import TopicPartition
from clickbus.private_files import PRIVATE_FILE

BUSY_TIMEOUT_S = 30.0
_SCHEMA = """
CREATE TABLE IF NOT EXISTS group_offsets (
    grp TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    PRIMARY KEY (grp, topic, partition)
) WITHOUT ROWID;
"""
_UPSERT = (
    "INSERT INTO group_offsets (grp, topic, partition, next_offset) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (grp, topic, partition) DO UPDATE SET next_offset = excluded.next_offset"
)


class GroupOffsets:
    """Per group, topic and partition, the next offset to read; used from worker threads, one call at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            # SQLite gives its -wal and -shm files the database file's mode: create it private first
            with contextlib.suppress(FileExistsError):
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
                conn.executescript(_SCHEMA)
            except sqlite3.Error:  # a full or read-only disk: tried again at the next call
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def commit(self, group: str, offsets: Mapping[TopicPartition, int]) -> None:
        rows = [(group, topic, partition, offset) for (topic, partition), offset in offsets.items()]
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(_UPSERT, rows)
            except sqlite3.Error:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def committed(self, group: str, topic: str) -> dict[int, int]:
        """Partition -> next offset, for the partitions of `topic` the group has committed in."""
        with self._lock:
            rows = (
                self._connection()
                .execute("SELECT partition, next_offset FROM group_offsets WHERE grp = ? AND topic = ?", (group, topic))
                .fetchall()
            )
        return {int(p): int(n) for p, n in rows}

    def groups(self, topic: str, partition: int) -> dict[str, int]:
        """Group -> next offset, for every group that has committed in this partition."""
        with self._lock:
            rows = (
                self._connection()
                .execute(
                    "SELECT grp, next_offset FROM group_offsets WHERE topic = ? AND partition = ?", (topic, partition)
                )
                .fetchall()
            )
        return {str(g): int(n) for g, n in rows}

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
