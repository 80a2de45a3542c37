"""SIGKILL the reporting process again and again under running load: afterwards the report equals the counts
recomputed from the topics' own records, to the click (nothing counted twice, nothing missed), on each store.

The service (`clickbus run`: edge and notifier, reporting off) takes clicks and impressions from a load
task the whole time; `clickbus reporter` runs beside it and is killed with SIGKILL `KILLS` times, each
after a random moment of counting. `make chaos`-length runs raise KILLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from clickbus.config import Config
from clickbus.log import open_log
from clickbus.log.port import Topic
from clickbus.reports.counting import event_of
from clickbus.reports.port import Query, Values, add_events
from clickbus.reports.schema import DIMENSIONS, Key
from clickbus.reports.service import open_store
from tests.support.bidder import BidderStub
from tests.support.postgres import PostgresCluster, postgres
from tests.support.service import Service
from tests.support.waiting import eventually_async

__all__ = ["postgres"]
KILLS = 10
BROWSER = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148"
)
CURL = "curl/8.5.0"
pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


async def expected_from_the_topics(config: Config) -> tuple[dict[Key, Values], int]:
    """Every verdict and outcome in the log counted once per (record id, step, outcome); and the records judged."""
    log = open_log(config)
    events = []
    for topic in (Topic.VERDICTS, Topic.DELIVERIES):
        async for entry in log.read(topic, from_beginning=True, follow=False):
            if (event := event_of(entry.value)) is not None:
                events.append(event)
    seen: set[bytes] = set()
    once = [e for e in events if not (e.seen in seen or seen.add(e.seen))]  # type: ignore[func-returns-value]
    judged = sum(1 for e in once if e.counts[0] or e.counts[1])
    return add_events(once), judged


async def reported(config: Config) -> dict[Key, Values]:
    store = open_store(config, read_only=True)
    await store.start()
    try:
        query = Query(0, 2**40, DIMENSIONS, "hour")
        rows = [row async for row in store.query(query)]
        return {tuple(k for k in row[:11] if k is not None): [int(v or 0) for v in row[11:]] for row in rows}
    finally:
        await store.stop()


async def load(service: Service, stop: asyncio.Event) -> int:
    """Clicks (some doubled, some by curl) and impressions on three creatives until `stop`; how many were sent."""
    sent = 0
    async with aiohttp.ClientSession() as http:
        urls = []
        for creative in (1, 2, 3):
            body = {"markup": "x", "landing_url": "https://shop.example/", "auction": {"member_id": 13}}
            body["auction"] |= {"creative_id": creative, "auction_id_64": creative}  # type: ignore[operator]
            async with http.post(service.admin_url + "/v1/insert", json=body) as response:
                answer = await response.json()
            urls.append((answer["click_url"], answer["impression_url"]))
        rng = random.Random(7)
        while not stop.is_set():
            click, impression = rng.choice(urls)
            url, agent = (
                (click, BROWSER if rng.random() < 0.8 else CURL) if rng.random() < 0.5 else (impression, BROWSER)
            )
            async with http.get(url, headers={"User-Agent": agent}, allow_redirects=False) as response:
                assert response.status in (200, 302)
            sent += 1
            await asyncio.sleep(0.005)
    return sent


@contextlib.asynccontextmanager
async def reporter(service: Service, env: dict[str, str]) -> AsyncIterator[subprocess.Popen[bytes]]:
    argv = [sys.executable, "-m", "clickbus", "reporter", "--config", str(service.config_path)]
    with (service.directory / "reporter.log").open("ab") as err:
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, env=env)  # noqa: ASYNC220 (killed by pid)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


async def started(process: subprocess.Popen[bytes]) -> None:
    assert process.stdout is not None
    line = await asyncio.to_thread(process.stdout.readline)
    assert b"reporter counting" in line, line


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_sigkill_under_load_neither_loses_nor_counts_twice(
    tmp_path: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    import os

    bidder = BidderStub(script=["500"] * 5)  # some callbacks are retried, then delivered
    await bidder.start()
    store = ""
    if kind == "postgres":
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        store = f'store = "postgres"\npostgres_dsn = "{cluster.new_database()}"\n'
    extra = (
        f'[members.13]\nclick_uri = "{bidder.url}"\nallow_private = true\n'
        "[notifier]\nretry_base_s = 0.05\nretry_max_delay_s = 0.2\ncommit_interval_s = 0.05\nbreaker_failures = 1000\n"
        f"[reports]\nenabled = false\nmaintain_every_s = 0.5\n{store}"
    )
    service = Service(tmp_path, notifier=True, extra=extra).start()
    config = service.config
    stop = asyncio.Event()
    loading = asyncio.create_task(load(service, stop))
    rng = random.Random(kind)
    try:
        for _ in range(KILLS):
            async with reporter(service, dict(os.environ)) as process:
                await started(process)
                await asyncio.sleep(rng.uniform(0.1, 0.8))  # mid-batch, mid-transaction, mid-upkeep: anywhere
                process.send_signal(signal.SIGKILL)
        counted_while_killed = sum(v[0] + v[1] for v in (await reported(config)).values())
        stop.set()
        sent = await loading
        async with reporter(service, dict(os.environ)) as process:
            await started(process)

            async def settled() -> tuple[dict[Key, Values], dict[Key, Values]] | None:
                want, judged = await expected_from_the_topics(config)
                got = await reported(config)
                return (want, got) if judged == sent and got == want else None

            with contextlib.suppress(TimeoutError):
                await eventually_async(settled, timeout_s=60)
            want, judged = await expected_from_the_topics(config)
            got = await reported(config)
        assert judged == sent  # the notifier judged every click and impression the load sent
        assert got == want  # to the click: no row over (counted twice), none under (missed)
        assert 0 < counted_while_killed <= sum(v[0] + v[1] for v in want.values())
        assert sum(v[2] for v in want.values()) > 0 and sum(v[3] for v in want.values()) > 0  # delivered, retried
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await loading
        service.stop()
        await bidder.stop()
