"""Broker outages: every click is redirected, and every click reaches Kafka or is accounted for.

Tansu is memory-only, so a killed broker takes its records with it. Tests that
kill a broker therefore read what it acknowledged before killing it; tests
that freeze one (SIGSTOP: a black hole, the harder case for timeouts) read
everything at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
from pytest_aiohttp import AiohttpClient

from clickbus.config import Config
from clickbus.creative import Inserter
from clickbus.edge import create_app
from clickbus.keystore import load_keyring
from clickbus.log import open_log
from clickbus.log.kafka import KafkaLog
from clickbus.log.port import Topic
from clickbus.log.spool import Spool
from clickbus.tokens import AdContext, Keyring, new_key
from tests.log.conftest import KafkaConfigFactory
from tests.log.kafka_helpers import consume_all
from tests.support.edgeapp import EdgeClient, admin_client
from tests.support.kafka_broker import TansuBroker
from tests.support.ports import free_port
from tests.support.waiting import eventually, eventually_async

AD = AdContext(member_id=7, user_id_64=99, creative_id=5, landing_url="https://shop.example/")
WORKERS = 8


@dataclass
class Load:
    """Steady click traffic through the edge; each request is told apart by its Referer."""

    client: EdgeClient
    path: str
    statuses: dict[int, int] = field(default_factory=dict)
    paused: asyncio.Event = field(default_factory=asyncio.Event)
    stopped: bool = False
    busy: int = 0
    counter: itertools.count[int] = field(default_factory=itertools.count)

    async def worker(self) -> None:
        while not self.stopped:
            if self.paused.is_set():
                await asyncio.sleep(0.01)
                continue
            n = next(self.counter)
            self.busy += 1
            try:
                headers = {"Referer": f"https://pub.example/{n}"}
                response = await self.client.get(self.path, headers=headers, allow_redirects=False)
                self.statuses[n] = response.status
            finally:
                self.busy -= 1
            await asyncio.sleep(0.01)

    async def quiesce(self) -> None:
        self.paused.set()
        await eventually(lambda: not self.busy, timeout_s=20.0)

    def redirected(self) -> set[int]:
        return {n for n, status in self.statuses.items() if status == 302}


def referer_number(message: Any) -> int:
    return int(orjson.loads(message.value)["referer_url"].rsplit("/", 1)[1])


def account(load: Load, messages: list[Any]) -> dict[str, int]:
    """Check that every redirected click arrived, once or as exact copies of one record."""
    by_request: dict[int, set[bytes]] = defaultdict(set)
    click_ids: dict[int, set[str]] = defaultdict(set)
    for message in messages:
        n = referer_number(message)
        by_request[n].add(message.value)
        click_ids[n].add(orjson.loads(message.value)["click_id"])
    sent = load.redirected()
    assert sent == set(load.statuses), f"not redirected: {set(load.statuses) - sent}"
    missing = sent - set(by_request)
    assert not missing, f"{len(missing)} redirected clicks never reached kafka: {sorted(missing)[:10]}"
    assert all(len(ids) == 1 for ids in click_ids.values()), "one request, one click_id"
    assert all(len(values) == 1 for values in by_request.values()), "a duplicate is an exact copy"
    return {"sent": len(sent), "records": len(messages), "duplicates": len(messages) - len(by_request)}


async def wait_ready(client: EdgeClient) -> None:
    async def ready() -> bool:
        return (await client.get("/readyz")).status == 200

    await eventually_async(ready, timeout_s=20.0)


async def edge(aiohttp_client: AiohttpClient, config: Config) -> tuple[EdgeClient, str]:
    keyring = Keyring({"k1": new_key()}, "k1")
    path = urlsplit(Inserter(keyring, config.edge.public_url, ttl_s=3600).click_url(AD)).path
    return await aiohttp_client(create_app(config, keyring=keyring)), path


async def run_load(load: Load) -> list[asyncio.Task[None]]:
    return [asyncio.create_task(load.worker()) for _ in range(WORKERS)]


async def finish(load: Load, workers: list[asyncio.Task[None]]) -> None:
    load.stopped = True
    await asyncio.gather(*workers)


async def test_a_frozen_broker_under_load_loses_no_click(
    aiohttp_client: AiohttpClient, own_broker: TansuBroker, kafka_config: KafkaConfigFactory
) -> None:
    config = kafka_config(own_broker)
    client, path = await edge(aiohttp_client, config)
    load = Load(client, path)
    workers = await run_load(load)
    await asyncio.sleep(1.0)
    own_broker.freeze()
    await asyncio.sleep(1.0)
    async with admin_client(client.app) as admin:  # the reason is for operators: the internal listener
        during = await admin.get("/readyz")
        during_body = await during.json()
    await asyncio.sleep(2.0)
    own_broker.thaw()
    await asyncio.sleep(1.0)
    await finish(load, workers)
    await wait_ready(client)

    assert during.status == 503 and "spooling to disk" in during_body["reason"]
    messages = await consume_all(config, Topic.CLICKS)
    figures = account(load, messages)
    print("frozen broker:", figures)
    assert figures["sent"] > 200


async def test_a_broker_replaced_under_load_loses_no_click(
    aiohttp_client: AiohttpClient, own_broker: TansuBroker, kafka_config: KafkaConfigFactory
) -> None:
    config = kafka_config(own_broker)
    client, path = await edge(aiohttp_client, config)
    load = Load(client, path)
    workers = await run_load(load)
    await asyncio.sleep(1.0)
    await load.quiesce()  # the old broker dies with its records: read what it acknowledged first
    acknowledged = await consume_all(config, Topic.CLICKS)
    own_broker.stop()
    load.paused.clear()
    await asyncio.sleep(3.0)
    own_broker.start()  # a new, empty broker on the same port
    await asyncio.sleep(1.5)
    await finish(load, workers)
    await wait_ready(client)

    shipped = await consume_all(config, Topic.CLICKS)
    figures = account(load, acknowledged + shipped)
    print("replaced broker:", figures)
    assert len(acknowledged) > 50 and len(shipped) > 50


async def test_stopping_with_the_broker_down_is_bounded_and_the_spool_ships_at_next_start(
    own_broker: TansuBroker, kafka_config: KafkaConfigFactory
) -> None:
    config = kafka_config(own_broker)
    log = open_log(config)
    assert isinstance(log, KafkaLog)
    await log.start()
    await log.append(Topic.CLICKS, b"k", orjson.dumps({"n": -1}))
    own_broker.stop()
    await asyncio.gather(*(log.append(Topic.CLICKS, b"k%d" % n, orjson.dumps({"n": n})) for n in range(20)))
    assert not log.health.ready

    started = time.monotonic()
    await log.stop(2.0)
    assert time.monotonic() - started < 2.5
    spool = Spool(config.data_dir / config.log.kafka.spool_dir, max_bytes=1 << 30)
    await spool.open()
    assert spool.pending == 20
    await spool.close()  # a spool has one writer: the restarted log must be able to hold it

    own_broker.start()
    again = open_log(config)
    await again.start()
    await eventually(lambda: again.health.ready, timeout_s=20.0)
    await again.stop(5)
    messages = await consume_all(config, Topic.CLICKS)
    assert at_least_once(messages) == list(range(20))


async def test_a_send_that_was_only_late_is_shipped_from_the_spool_all_the_same(
    own_broker: TansuBroker, kafka_config: KafkaConfigFactory
) -> None:
    config = kafka_config(own_broker)
    log = open_log(config)
    assert isinstance(log, KafkaLog)
    await log.start()
    try:
        await log.append(Topic.CLICKS, b"k", orjson.dumps({"n": -1}))
        own_broker.freeze()  # shorter than request_timeout_ms: the producer's own sends still succeed
        await asyncio.gather(*(log.append(Topic.CLICKS, b"k%d" % n, orjson.dumps({"n": n})) for n in range(10)))
        assert log.spool.pending == 10 and not log.health.ready
        await asyncio.sleep(0.3)
        own_broker.thaw()
        await eventually(lambda: log.health.ready, timeout_s=20.0)
    finally:
        await log.stop(5)
    messages = await consume_all(config, Topic.CLICKS)
    assert at_least_once(messages) == list(range(-1, 10))


def at_least_once(messages: list[Any]) -> list[int]:
    """The distinct record numbers read; a record read twice must be an exact copy (the spool ships regardless)."""
    values: dict[int, set[bytes]] = defaultdict(set)
    for m in messages:
        values[orjson.loads(m.value)["n"]].add(m.value)
    assert all(len(v) == 1 for v in values.values())
    return sorted(values)


def edge_process(conf: Path, data_dir: Path, port: int, bootstrap: str, *args: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CLICKBUS_LISTEN": f"127.0.0.1:{port}",
        "CLICKBUS_ADMIN_LISTEN": f"127.0.0.1:{free_port()}",
        "CLICKBUS_DATA_DIR": str(data_dir),
        "CLICKBUS_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "CLICKBUS_KAFKA_BOOTSTRAP": bootstrap,
    }
    command = [sys.executable, "-m", "clickbus", "run", "--config", str(conf), *args]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def wait_http(session: aiohttp.ClientSession, url: str, status: int, timeout_s: float = 20.0) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url) as response:
                    if response.status == status:
                        return
            await asyncio.sleep(0.05)


async def test_the_spool_survives_a_sigkill_of_the_edge(
    own_broker: TansuBroker, kafka_config: KafkaConfigFactory, tmp_path: Path
) -> None:
    config = kafka_config(own_broker)
    conf = tmp_path / "clickbus.toml"
    conf.write_text(
        f'[log]\ntopic_prefix = "{config.log.topic_prefix}"\n'
        "[log.kafka]\nidempotence = false\nrequest_timeout_ms = 2000\nconnect_timeout_ms = 2000\n"
    )
    keyring = load_keyring(config)  # creates data_dir/signing.key, which the edge process then uses
    port = free_port()
    path = urlsplit(Inserter(keyring, f"http://127.0.0.1:{port}", ttl_s=3600).click_url(AD)).path
    base = f"http://127.0.0.1:{port}"
    own_broker.stop()

    first = edge_process(conf, tmp_path, port, own_broker.bootstrap)
    try:
        async with aiohttp.ClientSession() as session:
            await wait_http(session, f"{base}/healthz", 200)
            for n in range(30):
                headers = {"Referer": f"https://pub.example/{n}"}
                async with session.get(base + path, headers=headers, allow_redirects=False) as response:
                    assert response.status == 302
            first.send_signal(signal.SIGKILL)
            first.wait(10)

            own_broker.start()
            second = edge_process(conf, tmp_path, port, own_broker.bootstrap)
            try:
                await wait_http(session, f"{base}/readyz", 200)
            finally:
                second.terminate()
                assert second.wait(15) == 0
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()

    messages = await consume_all(config, Topic.CLICKS)
    assert sorted(referer_number(m) for m in messages) == list(range(30))


async def test_a_stop_with_the_broker_back_ships_the_spool_before_exiting(
    own_broker: TansuBroker, kafka_config: KafkaConfigFactory, tmp_path: Path
) -> None:
    """SIGTERM while the shipper waits out its backoff (5 s here): the spool goes to Kafka now, not at next start."""
    config = kafka_config(own_broker)
    conf = tmp_path / "clickbus.toml"
    conf.write_text(
        f'[log]\ntopic_prefix = "{config.log.topic_prefix}"\n'
        "[log.kafka]\nidempotence = false\nrequest_timeout_ms = 2000\nconnect_timeout_ms = 2000\n"
        "retry_backoff_ms = 5000\n"
    )
    keyring = load_keyring(config)
    port = free_port()
    path = urlsplit(Inserter(keyring, f"http://127.0.0.1:{port}", ttl_s=3600).click_url(AD)).path
    base = f"http://127.0.0.1:{port}"
    own_broker.stop()

    edge = edge_process(conf, tmp_path, port, own_broker.bootstrap)
    try:
        async with aiohttp.ClientSession() as session:
            await wait_http(session, f"{base}/healthz", 200)
            for n in range(30):
                headers = {"Referer": f"https://pub.example/{n}"}
                async with session.get(base + path, headers=headers, allow_redirects=False) as response:
                    assert response.status == 302
            await wait_http(session, f"{base}/readyz", 503)  # spooling, and the shipper backing off
        own_broker.start()
        edge.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(edge.wait, 20) == 0
    finally:
        if edge.poll() is None:
            edge.kill()
            edge.wait()

    messages = await consume_all(config, Topic.CLICKS)
    assert sorted(referer_number(m) for m in messages) == list(range(30))
    spool = Spool(config.data_dir / config.log.kafka.spool_dir, max_bytes=1 << 30)
    await spool.open()
    try:
        assert spool.pending == 0
    finally:
        await spool.close()
    assert not list((config.data_dir / config.log.kafka.spool_dir).glob("*.spool"))
