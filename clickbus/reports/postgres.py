"""The scale-out report store: PostgreSQL through asyncpg.

Several reporters of one consumer group write it at once, each owning its partitions; a position moves
only from the value its writer read, so a reporter that lost a partition is fenced. Rows are written in
key order, so two writers adding to the same rows never deadlock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]

from clickbus.log.port import TopicPartition
from clickbus.reports import postgres_sql as sql
from clickbus.reports.port import (
    Batch,
    Fenced,
    Query,
    RawRow,
    StoreUnavailable,
    add_events,
    by_day,
    firsts,
    generation,
    identity,
)
from clickbus.reports.schema import DIMENSIONS
from clickbus.reports.sqlite import query_params

T = TypeVar("T")
FETCH_ROWS = 1000
CONNECT_TIMEOUT_S = 5.0
MIGRATION_TIMEOUT_S = 3600.0
# connection refused or lost, server shutting down or not yet up, deadlock: the transaction is retried whole
_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
)


class PostgresStore:
    """The `Store` port on PostgreSQL."""

    def __init__(self, dsn: str, *, read_only: bool = False, pool_size: int = 4) -> None:
        self._dsn = dsn
        self.read_only = read_only
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._newest: int | None = None  # the newest dedup generation this process counted (none yet: forget nothing)

    def __repr__(self) -> str:
        return "PostgresStore(dsn=***)"

    async def start(self) -> None:
        pool = asyncpg.create_pool(
            self._dsn, min_size=0, max_size=self._pool_size, timeout=CONNECT_TIMEOUT_S, command_timeout=60
        )

        async def connect() -> None:
            await pool  # min_size 0: connects nothing yet, but checks the DSN

        await self._guard(connect)
        self._pool = pool
        if not self.read_only:
            await self._transaction(self._migrate)

    async def stop(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    @staticmethod
    async def _migrate(db: asyncpg.Connection) -> None:
        await db.execute(sql.LOCK_MIGRATIONS)
        await db.execute(sql.CREATE_MIGRATIONS)
        applied = {row[0] for row in await db.fetch(sql.APPLIED)}
        for version, script in sql.MIGRATIONS:
            if version not in applied:
                await db.execute(script, timeout=MIGRATION_TIMEOUT_S)  # a backfill may outlast any query
                await db.execute(sql.RECORD_MIGRATION, version)

    async def _guard(self, work: Callable[[], Awaitable[T]]) -> T:
        try:
            return await work()
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"report store (PostgreSQL): {exc or type(exc).__name__}") from exc

    async def _transaction(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        pool = self._pool
        if pool is None:
            raise StoreUnavailable("report store not started")

        async def run() -> T:
            async with pool.acquire() as db, db.transaction():
                return await work(db)

        return await self._guard(run)

    async def positions(self, group: str) -> dict[TopicPartition, int]:
        rows = await self._transaction(lambda db: db.fetch(sql.POSITIONS, group))
        return {(row[0], row[1]): row[2] for row in rows}

    async def apply(self, batch: Batch) -> int:
        return await self._transaction(lambda db: self._apply(db, batch))

    async def _apply(self, db: asyncpg.Connection, batch: Batch) -> int:
        for move in sorted(batch.moves, key=lambda m: (m.topic, m.partition)):
            if move.expected is None:
                status = await db.execute(sql.INSERT_POSITION, batch.group, move.topic, move.partition, move.next)
            else:
                values = (move.next, batch.group, move.topic, move.partition, move.expected)
                status = await db.execute(sql.MOVE_POSITION, *values)
            if not status.endswith(" 1"):
                raise Fenced(f"{move.topic}[{move.partition}] moved past {move.expected} under this reporter")
        events = firsts(batch.events)  # the first of a pair written twice in one batch counts, not the second
        keys = sorted((identity(event.seen), generation(event.seen)) for event in events)
        args = ([k for k, _ in keys], [g for _, g in keys])
        new = {row[0] for row in await db.fetch(sql.SEE, *args)} if keys else set()
        fresh = [event for event in events if identity(event.seen) in new]
        if keys:
            self._newest = max(self._newest or 0, max(g for _, g in keys))
        added = add_events(fresh)
        if added:
            await db.executemany(sql.ADD_ROW, [(*key, *values) for key, values in sorted(added.items())])
            await db.executemany(sql.ADD_DAY, [(*key, *values) for key, values in sorted(by_day(added).items())])
        return len(fresh)

    async def query(self, query: Query) -> AsyncIterator[RawRow]:
        pool = self._pool
        if pool is None:
            raise StoreUnavailable("report store not started")
        args = query_args(query)
        try:
            async with pool.acquire() as db, db.transaction(readonly=True):
                statement = sql.query(frozenset(name for name, _ in query.filters))
                async for row in db.cursor(statement, *args, prefetch=FETCH_ROWS):
                    yield tuple(row)
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"report store (PostgreSQL): {exc or type(exc).__name__}") from exc
        except asyncpg.UndefinedTableError as exc:  # no reporter has migrated this database (to this version) yet
            raise StoreUnavailable(f"report store (PostgreSQL): {exc}; a reporter creates it when it starts") from exc

    async def maintain(self, *, fold_before: int, delete_before: int) -> None:
        async def upkeep(db: asyncpg.Connection) -> None:
            await db.execute(sql.LOCK_UPKEEP)
            await db.execute(sql.FOLD, fold_before)
            await db.execute(sql.DELETE_OLD, delete_before)
            await db.execute(sql.DELETE_OLD_DAYS, delete_before)
            if self._newest is not None:  # the two newest generations this reporter counted are kept
                await db.execute(sql.FORGET, self._newest - 1)

        await self._transaction(upkeep)


def query_args(query: Query) -> list[Any]:
    """The positional arguments of `postgres_sql.query`."""
    params = query_params(query)
    filters = dict(query.filters)
    return [params[name] for name in sql.QUERY_PARAMETERS] + [filters[name] for name in DIMENSIONS if name in filters]
