"""The notifier's POST, client against client: CPU per delivery of aiohttp as the notifier uses it, leaner uses of
aiohttp, and httpx (when installed: it is not a dependency), against the bidder stub in another process.

Each variant posts the same `click_request` bodies with the same concurrency (`CONCURRENCY` in flight) from this
process, pinned to the server core; the stub runs on the load core. The figure is this process's CPU time per
answered POST (user + system, all threads), best of `ROUNDS`: the client's own cost, what a notifier pays per
delivery beside its judging and recording. Run: `python -m bench.clients [--quick]`.
"""

from __future__ import annotations

import asyncio
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson

from bench.delivery import CONCURRENCY, Stub, _loop_factory
from bench.load import SERVER_CORES, pinned
from clickbus.notifier.delivery import body_of, post
from tests.notifier.factory import click

ROUNDS = 3
Poster = Callable[[Any], Awaitable[None]]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _drive(post_one: Callable[[Any], Awaitable[None]], items: list[Any]) -> float:
    """CPU microseconds per item of `CONCURRENCY` workers calling `post_one` on every item."""
    queue = list(reversed(items))

    async def worker() -> None:
        while queue:
            await post_one(queue.pop())

    started = _cpu()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return (_cpu() - started) / len(items) * 1e6


async def _bare(url: str, clicks: list[Any]) -> float:
    """bench.delivery's baseline: a plain aiohttp post of the body, its answer read."""
    headers = {"content-type": "application/json"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY)) as session:

        async def one(c: Any) -> None:
            async with session.post(url, data=body_of(c), headers=headers, allow_redirects=False) as response:
                await response.content.read(65536)

        return await _drive(one, clicks)


async def _notifier_post(url: str, clicks: list[Any]) -> float:
    """`clickbus.notifier.delivery.post` as the notifier calls it (headers, timeout, capped read, classify)."""
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False, trust_env=False) as session:

        async def one(c: Any) -> None:
            await post(session, url, c, signer=None, timeout_s=2.0, cap=65536)

        return await _drive(one, clicks)


async def _lean(url: str, clicks: list[Any]) -> float:
    """aiohttp used leanly: the session's timeout, no auto headers, no cookie jar, the answer read whole."""
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(
        connector=connector,
        auto_decompress=False,
        trust_env=False,
        timeout=aiohttp.ClientTimeout(total=2.0),
        cookie_jar=aiohttp.DummyCookieJar(),
        skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
    ) as session:

        async def one(c: Any) -> None:
            body = body_of(c)
            headers = {"content-type": "application/json", "webhook-id": c.click_id, "webhook-timestamp": "1"}
            async with session.post(url, data=body, headers=headers, allow_redirects=False) as response:
                raw = await response.read()
                orjson.loads(raw) if raw else None

        return await _drive(one, clicks)


async def _httpx(url: str, clicks: list[Any]) -> float | None:
    """httpx's AsyncClient (h11 underneath), when installed."""
    try:
        import httpx
    except ImportError:
        return None
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(limits=limits, timeout=2.0, follow_redirects=False, trust_env=False) as client:

        async def one(c: Any) -> None:
            headers = {"content-type": "application/json", "webhook-id": c.click_id, "webhook-timestamp": "1"}
            response = await client.post(url, content=body_of(c), headers=headers)
            raw = response.content
            orjson.loads(raw) if raw else None

        return await _drive(one, clicks)


async def _run(quick: bool) -> list[dict[str, Any]]:
    n = 3000 if quick else 10000
    stub = Stub()
    variants = {
        "bare aiohttp loop (bench.delivery's baseline)": _bare,
        "notifier's post (clickbus.notifier.delivery)": _notifier_post,
        "aiohttp, lean session": _lean,
        "httpx AsyncClient": _httpx,
    }
    best: dict[str, float] = {}
    try:
        await _bare(stub.url, [click(13) for _ in range(1000)])  # warm the stub up
        for _ in range(ROUNDS):
            for name, variant in variants.items():
                with pinned({int(SERVER_CORES)}):
                    cpu = await variant(stub.url, [click(13) for _ in range(n)])
                if cpu is not None:
                    best[name] = min(best.get(name, cpu), cpu)
    finally:
        stub.stop()
    base = best["bare aiohttp loop (bench.delivery's baseline)"]
    return [
        {"name": name, "value": round(cpu, 1), "unit": "CPU us/POST", "ratio": round(base / cpu, 2)}
        for name, cpu in best.items()
    ]


def main(quick: bool = False) -> list[dict[str, Any]]:
    """Print one JSON row per client variant."""
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        rows = runner.run(_run(quick))
    for row in rows:
        print(orjson.dumps(row).decode())
    return rows


if __name__ == "__main__":
    started = time.monotonic()
    main(quick="--quick" in sys.argv)
