"""PostgreSQL unreachable: `/v1/reports` answers 503 with the reason; counting waits and resumes, nothing twice."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from clickbus.edge import create_admin_app, create_app
from clickbus.ids import uuid7
from clickbus.log import open_log
from clickbus.log.port import Topic
from clickbus.reports.port import Query, StoreUnavailable
from clickbus.reports.postgres import PostgresStore
from clickbus.reports.rollup import Rollup
from clickbus.runtime import edge_app
from clickbus.tokens import Keyring, new_key
from tests.support.configs import build_config
from tests.support.edgeapp import app_click_path
from tests.support.postgres import PostgresCluster, binaries
from tests.support.records import recorded
from tests.support.waiting import eventually, eventually_async

DIMS = {"kind": "click", "creative": 5, "device": "mobile", "source": "redirect"}


def verdict() -> bytes:
    return orjson.dumps({"click_id": uuid7(), "member_id": 13, "attempt": 0, "outcome": "valid", "dims": DIMS})


async def test_reports_answer_503_naming_the_reason(tmp_path: Path) -> None:
    dsn = f"postgresql://clickbus@/reports?host={tmp_path}&port=1"  # nothing listens there
    config = build_config(tmp_path / "var", reports={"store": "postgres", "postgres_dsn": dsn})
    edge = create_app(config, keyring=Keyring({"k1": new_key()}, "k1"))
    async with TestClient(TestServer(create_admin_app(edge))) as admin:
        response = await admin.get("/v1/reports")
        assert response.status == 503
        assert orjson.loads(await response.read())["error"].startswith("report store (PostgreSQL): ")


async def test_counting_waits_for_the_store_and_resumes_counting_once(tmp_path: Path) -> None:
    bin_dir = binaries()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed")
    cluster = PostgresCluster(bin_dir).init()  # its own: this test stops it
    cluster.start()
    log = open_log(build_config(tmp_path))
    await log.start()
    store = PostgresStore(cluster.new_database())
    await store.start()
    rollup = Rollup(log, store, "g", fetch_wait_s=0.05)
    await rollup.start()

    async def clicks() -> int:
        rows = [row async for row in store.query(Query(0, 2**40, ()))]
        return sum(int(row[12] or 0) for row in rows)

    try:
        for _ in range(20):
            await log.append(Topic.VERDICTS, b"k", verdict())
        await eventually_async(lambda: _has(clicks, 20))
        cluster.stop()
        for _ in range(30):
            await log.append(Topic.VERDICTS, b"k", verdict())
        await eventually(lambda: rollup.waiting, timeout_s=20)  # it tried, and waits
        cluster.start()
        await eventually_async(lambda: _has(clicks, 50), timeout_s=30)
        assert rollup.counted == 50
    finally:
        await rollup.stop(5)
        await store.stop()
        await log.stop(5)
        cluster.remove()


async def _has(count: Callable[[], Awaitable[int]], want: int) -> bool:
    try:
        return await count() == want
    except StoreUnavailable:
        return False


async def test_clicks_are_answered_while_the_report_store_is_down(tmp_path: Path) -> None:
    dsn = f"postgresql://clickbus@/reports?host={tmp_path}&port=1"  # nothing listens there
    config = build_config(tmp_path / "var", reports={"store": "postgres", "postgres_dsn": dsn})
    edge = edge_app(config, keyring=Keyring({"k1": new_key()}, "k1"), with_notifier=True)  # reporting inside
    async with TestClient(TestServer(edge)) as client:
        for auction in range(1, 6):
            response = await client.get(app_click_path(edge, auction_id=auction), allow_redirects=False)
            assert response.status == 302
        assert len(await recorded(config)) == 5


async def test_a_database_no_reporter_has_set_up_is_unavailable_not_a_crash(tmp_path: Path) -> None:
    bin_dir = binaries()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed")
    cluster = PostgresCluster(bin_dir).init()
    cluster.start()
    try:
        reader = PostgresStore(cluster.new_database(), read_only=True)  # migrations are the reporter's
        await reader.start()
        with pytest.raises(StoreUnavailable, match="a reporter creates it"):
            [row async for row in reader.query(Query(0, 2**40, ()))]
        await reader.stop()
    finally:
        cluster.remove()
