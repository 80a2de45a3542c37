"""Two reporters in one consumer group on Kafka, writing PostgreSQL at once, one SIGKILLed again and again:
every rebalance moves partitions between them, and afterwards the report equals the topics' own counts."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from clickbus import config as configuration
from clickbus.config import Config
from clickbus.ids import uuid7
from clickbus.log import open_log
from clickbus.log.port import Log, Topic
from clickbus.reports.counting import event_of
from clickbus.reports.port import Query, Values, add_events
from clickbus.reports.schema import DIMENSIONS, Key
from clickbus.reports.service import open_store
from tests.support.kafka_broker import TansuBroker, kafka_broker
from tests.support.postgres import PostgresCluster, postgres
from tests.support.waiting import eventually_async

__all__ = ["kafka_broker", "postgres"]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]
KILLS = 3
OUTCOMES = ["valid", "invalid", "delivered", "retry", "dead"]


def write_config(tmp_path: Path, bootstrap: str, dsn: str) -> Path:
    path = tmp_path / "clickbus.toml"
    path.write_text(
        f'data_dir = "{tmp_path / "var"}"\n'
        f'[log]\nbackend = "kafka"\ntopic_prefix = "t{uuid.uuid4().hex[:12]}"\n'
        f'[log.kafka]\nbootstrap_servers = "{bootstrap}"\nidempotence = false\npartitions = 3\n'
        "request_timeout_ms = 2000\nconnect_timeout_ms = 2000\nretry_backoff_ms = 100\n"
        "group_session_timeout_ms = 1000\ngroup_heartbeat_interval_ms = 200\n"
        # a group of its own: the session's broker has seen other tests' reporters in the default group
        f'[reports]\nstore = "postgres"\npostgres_dsn = "{dsn}"\nbatch_max = 50\ngroup = "r{uuid.uuid4().hex[:12]}"\n'
    )
    return path


def record(rng: random.Random) -> tuple[str, bytes]:
    outcome = rng.choice(OUTCOMES)
    dims = {"kind": rng.choice(["click", "impression"]), "creative": rng.randint(1, 4), "device": "mobile"}
    body = {"click_id": uuid7(), "member_id": 13, "attempt": rng.randint(0, 2), "outcome": outcome, "dims": dims}
    body |= {"reason": "bot" if outcome == "invalid" else None, "ts_ms": 0, "test": False}
    return Topic.VERDICTS if outcome == "valid" else Topic.DELIVERIES, orjson.dumps(body)


async def load(log: Log, stop: asyncio.Event) -> None:
    """Verdicts and outcomes as the notifier writes them, one in ten written twice (as a spooled one may be)."""
    rng = random.Random(11)
    while not stop.is_set():
        topic, value = record(rng)
        key = orjson.loads(value)["click_id"].encode()
        for _ in range(2 if rng.random() < 0.1 else 1):
            await log.append(topic, key, value)
        await asyncio.sleep(0.002)


async def expected(log: Log) -> dict[Key, Values]:
    seen: set[bytes] = set()
    events = []
    for topic in (Topic.VERDICTS, Topic.DELIVERIES):
        async for entry in log.read(topic, from_beginning=True, follow=False):
            if (event := event_of(entry.value)) is not None and event.seen not in seen:
                seen.add(event.seen)
                events.append(event)
    return add_events(events)


async def reported_rows(config: Config) -> dict[Key, Values]:
    store = open_store(config, read_only=True)
    await store.start()
    try:
        rows = [row async for row in store.query(Query(0, 2**40, DIMENSIONS, "hour"))]
    finally:
        await store.stop()
    return {tuple(k for k in row[:11] if k is not None): [int(v or 0) for v in row[11:]] for row in rows}


def difference(got: dict[Key, Values], want: dict[Key, Values]) -> str:
    """The rows where the report and the topics' own counts differ (a double count or a loss shows there)."""
    keys = sorted(set(got) | set(want), key=str)
    rows = [f"{k}: reported {got.get(k)}, topics {want.get(k)}" for k in keys if got.get(k) != want.get(k)]
    return "the report differs from the topics' own counts:\n" + "\n".join(rows)


@contextlib.contextmanager
def reporters(config_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    running: list[subprocess.Popen[bytes]] = []
    try:
        yield running
    finally:
        for process in running:
            if process.poll() is None:
                process.kill()
            process.wait()


def start_reporter(config_path: Path, name: str) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "clickbus", "reporter", "--config", str(config_path)]
    with (config_path.parent / f"{name}.log").open("ab") as err:
        return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, env=dict(os.environ))


async def test_two_reporters_across_rebalances_count_each_record_once(
    tmp_path: Path, kafka_broker: TansuBroker, postgres: PostgresCluster
) -> None:
    config_path = write_config(tmp_path, kafka_broker.bootstrap, postgres.new_database())
    config = configuration.load(config_path, env={})
    log = open_log(config)
    await log.start()
    stop = asyncio.Event()
    loading = asyncio.create_task(load(log, stop))
    rng = random.Random(3)
    try:
        with reporters(config_path) as running:
            running.append(start_reporter(config_path, "a"))
            running.append(start_reporter(config_path, "b"))
            for _ in range(KILLS):
                await asyncio.sleep(rng.uniform(1.5, 3.0))  # both hold partitions, or are being given them
                running[0].send_signal(signal.SIGKILL)
                running[0].wait()
                running[0] = start_reporter(config_path, "a")
            stop.set()
            await loading
            want = await expected(log)
            assert sum(v[0] + v[1] for v in want.values()) > 100

            async def caught_up() -> bool:
                return await reported_rows(config) == want

            with contextlib.suppress(TimeoutError):
                await eventually_async(caught_up, timeout_s=120)  # two reporters catching up on a loaded machine
            got = await reported_rows(config)
            assert got == want, difference(got, want)
        b_log = (tmp_path / "b.log").read_text()
        # b held only some partitions while a was alive, and all of them while a was dead: real rebalances
        assigned = [line for line in b_log.splitlines() if "assigned" in line]
        assert len({line.count("[") for line in assigned}) > 1, assigned
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await loading
        await log.stop(5)
