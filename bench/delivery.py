"""Notifier benchmark: delivery throughput, click-to-callback latency, dedup memory per key.

1. Deliveries per second from the notifier (embedded log, clicks already
   logged) to a bidder stub in another process, against a bare aiohttp
   client loop posting the same bodies with the same concurrency.
2. Click-to-callback latency at a fixed click rate: clicks are appended to
   the embedded log at 1,000/s while the notifier runs; latency is the time
   from the append call to the stub receiving the callback.
3. Memory per key of the dedup window (tracemalloc), against a plain dict
   of key bytes to float expiry.

Run: `python -m bench.delivery [--quick]`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.load import LOAD_CORE, SERVER_CORES, on_cores, pinned
from clickbus import config as configuration
from clickbus import heap
from clickbus.log.embedded import EmbeddedLog
from clickbus.log.port import Topic
from clickbus.notifier import Notifier
from clickbus.notifier.dedup import DedupWindow
from clickbus.notifier.delivery import body_of
from tests.notifier.factory import click

CONCURRENCY = 64
RATE_PER_S = 1000
TICK_S = 0.01
ROUNDS = 3


def _row(name: str, value: float, unit: str, target: str, baseline: float | None = None) -> dict[str, Any]:
    ratio = round(value / baseline, 3) if baseline else None
    return {
        "name": name,
        "value": round(value, 3),
        "unit": unit,
        "baseline": baseline,
        "ratio": ratio,
        "target": target,
    }


class Stub:
    """The bidder stub (`tests/support/bidder.py`) in its own process, so it does not share the notifier's core."""

    def __init__(self) -> None:
        stub = on_cores([sys.executable, "-m", "tests.support.bidder"], str(LOAD_CORE))
        self.process = subprocess.Popen(stub, stdout=subprocess.PIPE, cwd=Path(__file__).parent.parent)
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().decode().strip()

    async def received(self, session: aiohttp.ClientSession) -> list[tuple[str, float]]:
        async with session.get(self.url.replace("/click", "/received")) as response:
            return [(i, t) for i, t in await response.json()]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        if self.process.stdout is not None:
            self.process.stdout.close()


def _config(data_dir: Path, url: str) -> configuration.Config:
    raw = {
        "data_dir": str(data_dir),
        "members": {"13": {"click_uri": url, "allow_private": True, "concurrency": CONCURRENCY}},
        "notifier": {},  # the defaults
    }
    return configuration.from_mapping(raw, env={})


async def _until(done: Callable[[], bool], timeout_s: float) -> None:
    """Poll `done` (the notifier's outcome counters have no event to wait on) for up to `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.002)


async def _bare_loop(url: str, bodies: list[bytes]) -> float:
    """Deliveries/s of a plain aiohttp client: CONCURRENCY workers posting the bodies."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    headers = {"content-type": "application/json"}

    async def worker(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            body = queue.get_nowait()
            async with session.post(url, data=body, headers=headers, allow_redirects=False) as response:
                await response.content.read(65536)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY)) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(CONCURRENCY)))
        return len(bodies) / (time.perf_counter() - started)


@contextlib.contextmanager
def _collector_restored() -> Iterator[None]:
    """The collector's defaults back after a notifier settled it (`clickbus.heap`): the bare loop runs untuned."""
    before = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


async def _notifier_rate(data_dir: Path, url: str, clicks: list[Any]) -> float:
    """Deliveries/s of the notifier draining `clicks`, already in the log."""
    log = EmbeddedLog(data_dir / "log")
    await log.start()
    try:
        await asyncio.gather(*(log.append(Topic.CLICKS, c.dedup_key(), c.to_json(), c.headers()) for c in clicks))
        notifier = Notifier(_config(data_dir, url), log)
        started = time.perf_counter()
        await notifier.start()
        heap.settle()  # as `clickbus notifier` does once started (inside the timing: a process pays it once)
        await _until(lambda: notifier.counts["delivered"] >= len(clicks), 120.0)
        elapsed = time.perf_counter() - started
        await notifier.stop(5.0)
        return len(clicks) / elapsed
    finally:
        await log.stop(5.0)


async def _latency(data_dir: Path, stub: Stub, seconds: float) -> list[float]:
    """Milliseconds from append to callback for clicks appended at RATE_PER_S."""
    log = EmbeddedLog(data_dir / "log")
    await log.start()
    notifier = Notifier(_config(data_dir, stub.url), log)
    await notifier.start()
    heap.settle()
    sent: dict[str, float] = {}
    try:
        warm = [click(13) for _ in range(500)]  # steady state: connections open, caches filled
        await asyncio.gather(*(log.append(Topic.CLICKS, c.dedup_key(), c.to_json(), c.headers()) for c in warm))
        await _until(lambda: notifier.counts["delivered"] >= len(warm), 30.0)
        per_tick = int(RATE_PER_S * TICK_S)
        appends = []
        next_tick = time.perf_counter()
        for _ in range(int(seconds / TICK_S)):
            for c in [click(13) for _ in range(per_tick)]:
                sent[c.click_id] = time.time()
                appends.append(asyncio.ensure_future(log.append(Topic.CLICKS, c.dedup_key(), c.to_json(), c.headers())))
            next_tick += TICK_S
            await asyncio.sleep(max(0.0, next_tick - time.perf_counter()))
        await asyncio.gather(*appends)
        await _until(lambda: notifier.counts["delivered"] >= len(warm) + len(sent), 30.0)
        async with aiohttp.ClientSession() as session:
            received = await stub.received(session)
    finally:
        await notifier.stop(5.0)
        await log.stop(5.0)
    first: dict[str, float] = {}
    for click_id, at in received:
        first.setdefault(click_id, at)
    return [(first[i] - t) * 1000 for i, t in sent.items() if i in first]


def _memory_per_key(n: int) -> tuple[float, float]:
    """Bytes per key: the dedup window, and a dict of key bytes to float expiry (which owns its keys)."""
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    window = DedupWindow(3_600_000)
    for i in range(n):
        window.check_and_add(f"13/{i}/a1b2c3d4e5f6/77".encode(), i)
    ours = (tracemalloc.get_traced_memory()[0] - before) / n
    naive_before = tracemalloc.get_traced_memory()[0]
    naive = {f"13/{i}/a1b2c3d4e5f6/77".encode(): float(i + 3_600_000) for i in range(n)}
    theirs = (tracemalloc.get_traced_memory()[0] - naive_before) / n
    tracemalloc.stop()
    assert len(window) == len(naive) == n
    return ours, theirs


async def _run(quick: bool) -> list[dict[str, Any]]:
    n = 5000 if quick else 20000
    rows = []
    stub = Stub()
    try:
        await _bare_loop(stub.url, [body_of(click(13)) for _ in range(2000)])  # warm the stub up
        # Latency first, unpinned: threads started inside a pinned block (the loop's executor, the log's) stay
        # on the server core after it, and measured after the throughput rounds the same code's p99 went from
        # 140 to 341 ms.
        with tempfile.TemporaryDirectory() as tmp, _collector_restored():
            latencies = await _latency(Path(tmp), stub, 2.0 if quick else 5.0)
        bare = ours = 0.0
        for _ in range(ROUNDS):  # alternate, keep the best of each
            clicks = [click(13) for _ in range(n)]
            # throughput per core: this process (the notifier, or the bare loop) on the server core, the stub
            # on the load core; the latency run below is not pinned (its appends and the notifier share it)
            with pinned({int(SERVER_CORES)}):
                bare = max(bare, await _bare_loop(stub.url, [body_of(c) for c in clicks]))
                with tempfile.TemporaryDirectory() as tmp, _collector_restored():
                    ours = max(ours, await _notifier_rate(Path(tmp), stub.url, clicks))
        rows.append(
            {
                **_row("notifier deliveries/s vs bare aiohttp loop", ours, "deliveries/s", ">= 0.6", round(bare, 1)),
                # both run in this process on the one server core, saturated: deliveries per second of one core
                "detail": f"both pinned to core {SERVER_CORES}, the stub on core {LOAD_CORE}; best of {ROUNDS} rounds; "
                "the notifier's collector settled as `clickbus notifier` settles it (clickbus/heap.py), the bare "
                "loop's left at CPython's defaults",
            }
        )
    finally:
        stub.stop()
    cuts = statistics.quantiles(latencies, n=100)
    rows.append(_row(f"click-to-callback p50 at {RATE_PER_S}/s", cuts[49], "ms", "informational"))
    rows.append(_row(f"click-to-callback p99 at {RATE_PER_S}/s", cuts[98], "ms", "<= 250 ms"))
    ours_b, naive_b = _memory_per_key(100_000 if quick else 300_000)
    rows.append(
        _row("dedup memory per key vs dict[bytes, float]", ours_b, "bytes/key", "<= 100 bytes", round(naive_b, 1))
    )
    return rows


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def main(quick: bool = False) -> list[dict[str, Any]]:
    """Run the notifier benchmarks and print one JSON row per figure."""
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:  # the loop `clickbus notifier` runs on
        rows = runner.run(_run(quick))
    for row in rows:
        print(orjson.dumps(row).decode())
    return rows


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
