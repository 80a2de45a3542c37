"""Reports: how fast the rollup counts, how fresh the report is and how fast a long report reads, on both stores.

`python -m bench reports` (or `python -m bench.reports --rows N` for the report over N hourly rows;
`--only NAME` for one part). The rollup figure is records/s through the whole path of one batch
(parse, dedup key, one SQLite transaction with positions and counts) on one core; its baseline is
orjson parsing alone. The PostgreSQL parts start a throwaway cluster and (for freshness) a Tansu
broker, as the tests do, and skip where PostgreSQL is not installed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from clickbus.ids import uuid7
from clickbus.reports import postgres_sql, sqlite_sql
from clickbus.reports.counting import event_of
from clickbus.reports.port import Batch, Move, Query, Store, StoreUnavailable
from clickbus.reports.postgres import PostgresStore
from clickbus.reports.schema import DIMENSIONS, KEY, VALUES
from clickbus.reports.sqlite import SQLiteStore

BATCH = 5000
OUTCOMES = ("valid", "valid", "valid", "invalid", "delivered", "retry")


def records(n: int) -> list[bytes]:
    """Verdicts and outcomes as the notifier writes them: 50 creatives (one campaign, one placement each), 4 devices."""
    rng = random.Random(1)
    out = []
    for _ in range(n):
        outcome = rng.choice(OUTCOMES)
        creative = rng.randint(1, 50)
        dims = {"kind": rng.choice(("click", "impression")), "publisher": 1, "campaign": creative // 5}
        dims |= {"creative": creative, "placement": f"slot-{creative % 20}", "country": "FR"}
        dims |= {"device": rng.choice(("mobile", "tablet", "desktop", "other")), "source": "redirect"}
        record = {"click_id": uuid7(), "member_id": 13, "attempt": 1, "outcome": outcome, "status": 200}
        record |= {"latency_ms": 12.0, "error": "", "reason": "bot" if outcome == "invalid" else None}
        record |= {"click_response": None, "due_ms": None, "test": False, "ts_ms": int(time.time() * 1000)}
        out.append(orjson.dumps(record | {"dims": dims}))
    return out


async def rollup_rate(n: int, *, postgres: bool = False) -> tuple[float, float]:
    """(records/s counted into a fresh store, records/s parsed by orjson alone); SQLite, or a throwaway PostgreSQL."""
    values = records(n)
    started = time.perf_counter()
    for value in values:
        orjson.loads(value)
    parse_rate = n / (time.perf_counter() - started)
    if not postgres:
        with tempfile.TemporaryDirectory() as directory:
            return await _count(SQLiteStore(Path(directory) / "reports.sqlite3"), values), parse_rate
    from tests.support.postgres import PostgresCluster, binaries

    bin_dir = binaries()
    assert bin_dir is not None, "PostgreSQL is not installed"
    cluster = PostgresCluster(bin_dir).init()
    cluster.start()
    try:
        return await _count(PostgresStore(cluster.new_database()), values), parse_rate
    finally:
        cluster.remove()


async def _count(store: Store, values: list[bytes]) -> float:
    """Records/s through parse, dedup key and one transaction per BATCH into `store`."""
    await store.start()
    started = time.perf_counter()
    position: int | None = None
    for at in range(0, len(values), BATCH):
        events = [e for v in values[at : at + BATCH] if (e := event_of(v)) is not None]
        moved = at + len(values[at : at + BATCH])
        await store.apply(Batch("bench", [Move("deliveries", 0, position, moved)], events))
        position = moved
    rate = len(values) / (time.perf_counter() - started)
    await store.stop()
    return rate


def fill(path: Path, rows: int) -> int:
    """`rows` hourly rows over 120 days for 40 members, written directly; the hour the report ends at."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = OFF")
    for statement in filter(str.strip, sqlite_sql.MIGRATIONS[0][1].split(";")):
        db.execute(statement)
    end = int(time.time()) // 3600 * 3600
    hours = 120 * 24
    per_hour = max(1, rows // hours)
    columns, marks = ", ".join((*KEY, *VALUES)), ", ".join("?" * (len(KEY) + len(VALUES)))
    insert = f"INSERT OR IGNORE INTO rows ({columns}) VALUES ({marks})"
    zeros = [0] * (len(VALUES) - 2)
    db.execute("BEGIN")
    for h in range(hours):
        hour = end - h * 3600
        batch = []
        for i in range(per_hour):
            key = (hour, i % 40, 1, i % 10, i // 40, f"slot-{i % 20}", "FR", "mobile", "redirect", 0, "")
            batch.append((*key, 10, 1, *zeros))
        db.executemany(insert, batch)
    db.execute("COMMIT")
    for statement in filter(str.strip, sqlite_sql.MIGRATIONS[1][1].split(";")):  # the day rows, as if counted live
        db.execute(statement)
    db.close()
    return end


async def report_time(rows: int) -> float:
    """Seconds for a 90-day report by day for one member over `rows` hourly rows."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "reports.sqlite3"
        end = await asyncio.to_thread(fill, path, rows)
        store = SQLiteStore(path, read_only=True)
        query = Query(end - 90 * 86400, end + 3600, ("member",), "day", (("member", 7),))
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            got = [row async for row in store.query(query)]
            best = min(best, time.perf_counter() - started)
        assert len(got) >= 90, len(got)
        return best


BROWSER = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
_CLICKS_AT = 2 + len(DIMENSIONS) + 1  # the clicks column of a grouped row (valid and invalid alike)


async def report_time_postgres(rows: int) -> float:
    """The same report on PostgreSQL: `rows` hourly rows written hour by hour (as they are counted), then the days."""
    from tests.support.postgres import PostgresCluster, binaries

    bin_dir = binaries()
    assert bin_dir is not None, "PostgreSQL is not installed"
    cluster = PostgresCluster(bin_dir).init()
    cluster.start()
    try:
        import asyncpg  # type: ignore[import-untyped]

        dsn = cluster.new_database()
        db = await asyncpg.connect(dsn)
        await db.execute(postgres_sql.CREATE_MIGRATIONS)
        await db.execute(postgres_sql.MIGRATIONS[0][1])
        await db.execute(postgres_sql.RECORD_MIGRATION, 1)
        end = int(time.time()) // 3600 * 3600
        per_hour = max(1, rows // (120 * 24))
        await db.execute(
            "INSERT INTO rows (hour, member, publisher, campaign, creative, placement, country, device, source,"
            " test, reason, impressions, clicks) SELECT $1::bigint - h * 3600, i % 40, 1, i % 10, i / 40,"
            " 'slot-' || i % 20, 'FR', 'mobile', 'redirect', 0, '', 10, 1"
            " FROM generate_series(0, 120 * 24 - 1) AS h, generate_series(0, $2::int - 1) AS i",
            end,
            per_hour,
        )
        await db.close()
        store = PostgresStore(dsn)
        await store.start()  # migration 2 sums the day rows, as the rollup would have while counting
        db = await asyncpg.connect(dsn)
        await db.execute("VACUUM ANALYZE")  # as autovacuum would have by then
        await db.close()
        query = Query(end - 90 * 86400, end + 3600, ("member",), "day", (("member", 7),))
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            got = [row async for row in store.query(query)]
            best = min(best, time.perf_counter() - started)
        assert len(got) >= 90, len(got)
        await store.stop()
        return best
    finally:
        cluster.remove()


async def _first_reported(store: Store, timeout_s: float = 120) -> int:
    """The clicks reported, once there is one (within `timeout_s`)."""
    for _ in range(int(timeout_s * 10)):
        with contextlib.suppress(StoreUnavailable):  # until the reporter has created its tables
            if reported := await _reported(store):
                return reported
        await asyncio.sleep(0.1)
    raise TimeoutError("no click reported")


async def _reported(store: Store) -> int:
    rows = [row async for row in store.query(Query(0, 2**40, ()))]
    return sum(int(row[_CLICKS_AT] or 0) for row in rows)


async def freshness(rate: int, seconds: float, *, kafka: bool = False) -> tuple[float, int, float]:
    """(the longest a click took from its 302 to the report, clicks sent, the rate achieved) on `clickbus run`.

    `kafka`: on a Tansu broker with the reports in PostgreSQL, both started here as the tests start them.
    """
    if not kafka:
        return await _freshness(rate, seconds, "", None)
    from tests.support.kafka_broker import TansuBroker
    from tests.support.postgres import PostgresCluster, binaries

    bin_dir = binaries()
    assert bin_dir is not None, "PostgreSQL is not installed"
    cluster = PostgresCluster(bin_dir).init()
    cluster.start()
    broker = TansuBroker().start()
    try:
        dsn = cluster.new_database()
        config = (
            f'[log]\nbackend = "kafka"\ntopic_prefix = "fresh{int(time.time())}"\n'
            f'[log.kafka]\nbootstrap_servers = "{broker.bootstrap}"\nidempotence = false\npartitions = 3\n'
            f'[reports]\nstore = "postgres"\npostgres_dsn = "{dsn}"\n'
        )
        return await _freshness(rate, seconds, config, PostgresStore(dsn, read_only=True))
    finally:
        broker.stop()
        cluster.remove()


async def _freshness(rate: int, seconds: float, config: str, reader: PostgresStore | None) -> tuple[float, int, float]:
    import aiohttp

    from bench.load import Server, clickbus_run

    with Server(list(clickbus_run()), config=config) as server:
        url = server.click_url()
        store: Store = reader or SQLiteStore(server.directory / "var" / "reports.sqlite3", read_only=True)
        await store.start()
        answered: list[float] = []
        polls: list[tuple[float, int]] = []
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as http:

            async def click() -> None:
                async with http.get(url, headers={"User-Agent": BROWSER}, allow_redirects=False) as response:
                    if response.status == 302:
                        answered.append(time.monotonic())

            async def poll(until: asyncio.Event) -> None:
                while not (until.is_set() and polls and polls[-1][1] >= len(answered)):
                    polls.append((time.monotonic(), await _reported(store) - base))
                    await asyncio.sleep(0.1)

            # warm up: the measure starts once one click has gone all the way (a reporter joining a consumer
            # group on Kafka takes seconds first), so it is the lag at a steady rate, not the start-up
            await click()
            base = await _first_reported(store)
            answered.clear()
            done = asyncio.Event()
            poller = asyncio.create_task(poll(done))
            start = time.monotonic()
            tasks = []
            for i in range(int(rate * seconds)):  # open loop: each click at its time, answered or not
                await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
                tasks.append(asyncio.create_task(click()))
            await asyncio.gather(*tasks)
            achieved = len(answered) / (time.monotonic() - start)
            done.set()
            await asyncio.wait_for(poller, 60)
        await store.stop()
    answered.sort()
    lag = max(next(t for t, count in polls if count > i) - at for i, at in enumerate(answered))
    return lag, len(answered), achieved


PARTS = ("rollup", "rollup-postgres", "report", "report-postgres", "freshness", "freshness-kafka")


def main(quick: bool = False, rows: int | None = None, only: str | None = None) -> list[dict[str, Any]]:
    rows = rows or (200_000 if quick else 10_000_000)
    seconds = 3 if quick else 10
    out: list[dict[str, Any]] = []
    for part in PARTS if only is None else (only,):
        if part == "freshness" or part == "freshness-kafka":
            kafka = part == "freshness-kafka"
            lag, sent, achieved = asyncio.run(freshness(1000, seconds, kafka=kafka))
            where = "Kafka (Tansu) and PostgreSQL" if kafka else "embedded"
            at = f"{achieved:,.0f} clicks/s for {sent:,} clicks"
            out.append(
                {
                    "name": f"reports freshness, `clickbus run` ({where}), {at}",
                    "value": lag,
                    "unit": "s from a click's 302 to the report, the longest",
                    "target": f"<= {10 if kafka else 5} s at 1,000 clicks/s",
                }
            )
        elif part.startswith("rollup"):
            postgres = part == "rollup-postgres"
            rate, parse_rate = asyncio.run(rollup_rate(20_000 if quick else 200_000, postgres=postgres))
            out.append(
                {
                    "name": f"reports rollup, one core (parse, dedup, one {'PostgreSQL' if postgres else 'SQLite'}"
                    " transaction per 5,000)",
                    "value": rate,
                    "unit": "records/s",
                    "baseline": parse_rate,
                    "baseline_name": "orjson.loads alone",
                    "ratio": rate / parse_rate,
                    "target": ">= 20,000/s",
                }
            )
        else:
            postgres = part == "report-postgres"
            took = asyncio.run(report_time_postgres(rows) if postgres else report_time(rows))
            out.append(
                {
                    "name": f"90-day report by day, one member, over {rows:,} hourly rows"
                    f" ({'PostgreSQL' if postgres else 'SQLite'})",
                    "value": took * 1000,
                    "unit": "ms",
                    "target": "<= 1,000 ms",
                }
            )
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.reports", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rows", type=int, help="hourly rows under the 90-day report (default 10,000,000)")
    parser.add_argument("--only", choices=PARTS, help="run this part alone")
    args = parser.parse_args()
    for row in main(quick=args.quick, rows=args.rows, only=args.only):
        print(row, flush=True)
