"""Graceful shutdown: draining at the first signal, requests in flight finish, nothing acknowledged is lost."""

from __future__ import annotations

import asyncio
import itertools
import signal
import socket
import time
from pathlib import Path

import pytest
from aiohttp import ClientError, ClientSession, ClientTimeout, web
from pytest_aiohttp import AiohttpClient

from clickbus.config import Config
from clickbus.creative import Inserter
from clickbus.edge import create_app
from clickbus.edge.appkeys import DRAINING, INSERTER
from clickbus.edge.serve import Shutdown, drain, make_runner
from clickbus.keystore import load_keyring
from clickbus.log import EmbeddedLog
from clickbus.log.port import Headers
from clickbus.metrics import create_metrics
from tests.support.configs import edge_config
from tests.support.edgeapp import admin_client, click_path
from tests.support.records import recorded
from tests.support.service import Service


class GatedLog(EmbeddedLog):
    """The embedded log, holding each append until the test opens the gate."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()

    async def append(self, topic: str, key: bytes, value: bytes, headers: Headers = ()) -> None:
        self.waiting.set()
        await self.gate.wait()
        await super().append(topic, key, value, headers)


async def logged_auction_ids(config: Config) -> list[int]:
    return [record["auction_id_64"] for record in await recorded(config)]


async def test_readyz_turns_503_while_draining(tmp_path: Path, aiohttp_client: AiohttpClient) -> None:
    app = create_app(edge_config(tmp_path), metrics=create_metrics())
    client = await aiohttp_client(app)
    assert (await client.get("/readyz")).status == 200
    Shutdown(app[DRAINING]).signal(signal.SIGTERM)
    response = await client.get("/readyz")
    assert response.status == 503
    assert await response.json() == {"status": "unavailable"}  # the reason is on the internal listener
    async with admin_client(app) as admin:
        internal = await admin.get("/readyz")
        assert await internal.json() == {"status": "unavailable", "reason": "shutting down"}


async def test_requests_in_flight_finish_and_the_log_flushes(tmp_path: Path) -> None:
    config = edge_config(tmp_path, shutdown_timeout_s=5.0)
    log = GatedLog(config.log_path)
    app = create_app(config, log=log, metrics=create_metrics())
    runner = make_runner(app, config)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    shutdown = Shutdown(app[DRAINING])
    async with ClientSession() as session:
        url = f"http://{host}:{port}{click_path(app[INSERTER], auction_id=99)}"
        in_flight = asyncio.create_task(session.get(url, allow_redirects=False))
        await asyncio.wait_for(log.waiting.wait(), 5)
        shutdown.signal(signal.SIGTERM)
        assert app[DRAINING].is_set() and shutdown.requested.is_set()
        stopping = asyncio.create_task(drain([runner], config.edge.shutdown_timeout_s))
        await asyncio.sleep(0.1)
        assert not stopping.done()  # waits for the click in flight
        log.gate.set()
        response = await in_flight
        assert response.status == 302
        await stopping
    assert await logged_auction_ids(config) == [99]


async def _load(url_for: itertools.count[int], inserter: Inserter, base: str, until: float) -> tuple[set[int], int]:
    acked: set[int] = set()
    failures = 0
    timeout = ClientTimeout(total=5)
    async with ClientSession(timeout=timeout) as session:
        while time.monotonic() < until:
            auction_id = next(url_for)
            try:
                async with session.get(base + click_path(inserter, auction_id=auction_id), allow_redirects=False) as r:
                    if r.status == 302:
                        acked.add(auction_id)
                    else:
                        failures += 1
            except (ClientError, TimeoutError):
                failures += 1
                await asyncio.sleep(0.01)
    return acked, failures


async def _load_for(seconds: float, ids: itertools.count[int], inserter: Inserter, base: str) -> tuple[set[int], int]:
    until = time.monotonic() + seconds
    results = await asyncio.gather(*(_load(ids, inserter, base, until) for _ in range(16)))
    return set().union(*(acked for acked, _ in results)), sum(failed for _, failed in results)


@pytest.mark.slow
async def test_restart_under_load_loses_no_acknowledged_click(tmp_path: Path) -> None:
    service = Service(tmp_path, workers=2)
    config = service.config
    inserter = Inserter(load_keyring(config), config.edge.public_url, ttl_s=3600)
    ids = itertools.count(1)
    await asyncio.to_thread(service.start)
    load = asyncio.create_task(_load_for(3.0, ids, inserter, service.url))
    await asyncio.sleep(1.0)
    service.signal(signal.SIGTERM)  # mid-load
    assert await asyncio.to_thread(service.wait) == 0, service.logs()
    await asyncio.to_thread(service.start)  # the load goes on against the new processes
    acked, failures = await load
    assert await asyncio.to_thread(service.stop) == 0, service.logs()
    logged = await logged_auction_ids(config)
    assert len(acked) > 100 and failures > 0  # real load, and it did meet the restart
    assert acked <= set(logged), f"{len(acked - set(logged))} acknowledged clicks missing"
    assert len(logged) == len(set(logged))


def _hold_a_request(port: int) -> socket.socket:
    """A request in flight on the internal listener at `port`: its handler waits for a body that is still coming."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(
        b"POST /v1/insert HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
    )
    return sock


def _wait_for_log(service: Service, text: str) -> None:
    deadline = time.monotonic() + 10
    while text not in service.logs():
        assert time.monotonic() < deadline, service.logs()
        time.sleep(0.02)


@pytest.mark.slow
@pytest.mark.parametrize(("signals", "status"), [(1, 0), (2, 1)])
def test_drain_is_bounded_and_a_second_signal_exits_at_once(tmp_path: Path, signals: int, status: int) -> None:
    service = Service(tmp_path, shutdown_timeout_s=1.0).start()
    with _hold_a_request(service.admin_port):
        time.sleep(0.2)
        service.signal(signal.SIGTERM)
        _wait_for_log(service, "draining")
        if signals == 2:
            service.signal(signal.SIGTERM)
        assert service.wait() == status, service.logs()
    assert ("second SIGTERM" in service.logs()) == (signals == 2)
