"""The cost of open consoles to the edge: its CPU per click with 5 console pages open against none, same run.

`clickbus run --workers 2` (its notifier a third process) is pinned to core 0 and loaded with clicks
at a fixed rate from core 1. A page is simulated by the requests a console page makes: its first
`GET /v1/console/live`, then one with `?after=` every second (page assets load once and are left
out). Rounds alternate none/5 pages; the figure is the edge workers' CPU time (from /proc, the
notifier excluded: it samples the metrics whether pages are open or not) per click answered.
On a machine others share, that pair ratio moves by more than the 2 % it tests, so the CPU one
poll costs a worker is also measured directly (in this process: the feed read, parsed anew each
time as when the notifier has just rewritten it, and the answer encoded), and turned into the
share of the edge's CPU that 5 pages polling once a second take at the click rate.
Target (issue 18): with 5 pages open, the edge's CPU per click rises by at most 2 %.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson

from bench.load import LOAD_CORE, Server, _children, _cpu_seconds, clickbus_argv, pinned, pinning, print_rows
from clickbus.config import from_mapping
from clickbus.console.feed import Feed, FeedReader
from clickbus.console.recent import RecentClicks
from clickbus.metrics import create_metrics
from tests.notifier.factory import click

PAGES = 5
POLL_S = 1.0


def _workers(server: Server) -> list[int]:
    """The edge worker processes of a `clickbus run --workers N` (not the notifier)."""
    assert server.process is not None
    found = []
    for pid in _children(server.process.pid):
        try:
            if b"--worker" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"):
                found.append(pid)
        except FileNotFoundError:
            continue
    return found


async def _clicks(url: str, rate: float, seconds: float) -> int:
    """Clicks at `rate` per second for `seconds`, each on time (a late one is sent at once); those answered 302."""
    answered = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:

        async def one() -> None:
            nonlocal answered
            async with session.get(url, allow_redirects=False) as response:
                answered += response.status == 302

        started = time.monotonic()
        sent: set[asyncio.Task[None]] = set()
        for n in range(int(rate * seconds)):
            delay = started + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one())
            sent.add(task)
            task.add_done_callback(sent.discard)
        await asyncio.gather(*sent)
    return answered


async def _page(admin_url: str, until: float) -> None:
    """The live view's requests: everything once, then what is new every second."""
    after = 0.0
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < until:
            async with session.get(f"{admin_url}/v1/console/live", params={"after": str(after)}) as response:
                feed = await response.json()
            after = max([after, *(s["t"] for s in feed["samples"])])
            await asyncio.sleep(POLL_S)


async def _load(server: Server, admin_url: str, pages: int, rate: float, seconds: float) -> int:
    until = time.monotonic() + seconds
    viewers = [asyncio.create_task(_page(admin_url, until)) for _ in range(pages)]
    answered = await _clicks(server.click_url(), rate, seconds)
    await asyncio.gather(*viewers)
    return answered


def _round(server: Server, admin_url: str, pages: int, rate: float, seconds: float) -> float:
    """The edge workers' CPU microseconds per click answered in one round."""
    workers = _workers(server)
    before = sum(_cpu_seconds(pid) for pid in workers)
    with pinned({LOAD_CORE}):
        answered = asyncio.run(_load(server, admin_url, pages, rate, seconds))
    return (sum(_cpu_seconds(pid) for pid in workers) - before) / max(answered, 1) * 1e6


def poll_cost_us(n: int = 2000) -> float:
    """CPU microseconds of one steady-state poll in a worker: the small feed parsed anew, the answer encoded."""
    with tempfile.TemporaryDirectory() as directory:
        config = from_mapping({"data_dir": directory}, env={})
        recent = RecentClicks()
        for _ in range(50):
            recent.click(click(), None)
        feed = Feed(config, create_metrics(), recent)
        shape: dict[str, object] = {"clicks": {"valid": 490.0, "duplicate": 8.0, "bot": 2.0}}
        shape |= {"impressions": {"valid": 2000.0}}
        shape |= {"redirect_p50_ms": 1.0, "redirect_p99_ms": 5.0, "callback_p99_ms": 50.0, "lag": 3.0}
        shape |= {"spool_records": 0.0, "disk_bytes": 1e8}
        feed.sampler.ring.extend({"t": 1e9 + t, **shape} for t in range(600))  # a full ring, as the sampler makes
        feed.sampler.tick()
        feed.write(recent.rows())
        reader = FeedReader(config, create_metrics())
        after = float(reader.read(0)["samples"][-2]["t"])
        started = time.process_time()
        for _ in range(n):
            reader.feed._mtime_ns = -1  # as if just rewritten: parsed again
            answer = reader.read(after)
            orjson.dumps({"now": 0.0, **answer})
        return (time.process_time() - started) / n * 1e6


def _admin_url(server: Server) -> str:
    text = server.config_path.read_text()
    return "http://" + text.split('admin_listen = "', 1)[1].split('"', 1)[0]


def main(
    quick: bool = False, *, rounds: int | None = None, seconds: float | None = None, rate: float = 500.0
) -> list[dict[str, object]]:
    rounds = rounds or (2 if quick else 4)
    seconds = seconds or (5.0 if quick else 10.0)
    print(f"console cost: {rate:.0f} clicks/s, {rounds} pairs of {seconds:.0f}s rounds, {pinning()}")
    with Server(list(clickbus_argv("run", "--workers", "2")), memory=True) as server:
        admin_url = _admin_url(server)
        deadline = time.monotonic() + 30
        while len(_workers(server)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        _round(server, admin_url, 0, rate, 2.0)  # warm up: the log's first segments, the notifier's window
        pairs = [
            (_round(server, admin_url, 0, rate, seconds), _round(server, admin_url, PAGES, rate, seconds))
            for _ in range(rounds)
        ]
    for none, open_ in pairs:
        print(f"  round: no page {none:6.1f} us/click   {PAGES} pages {open_:6.1f} us/click")
    ratio = statistics.median(open_ / none for none, open_ in pairs)
    base = statistics.median(none for none, _ in pairs)
    poll = poll_cost_us()
    share = PAGES / POLL_S * poll / (rate * base)
    rows: list[dict[str, object]] = [
        {
            "name": f"edge CPU per click at {rate:.0f}/s, no console open",
            "value": base,
            "unit": "us",
            "baseline": None,
            "ratio": None,
            "target": "baseline",
        },
        {
            "name": f"edge CPU per click at {rate:.0f}/s, {PAGES} console pages open",
            "value": base * ratio,
            "unit": "us",
            "baseline": base,
            "ratio": ratio,
            "target": "<= 1.02 (median pair ratio)",
        },
        {
            "name": f"{PAGES} pages' polls as a share of the edge's CPU at {rate:.0f} clicks/s ({poll:.0f} us a poll)",
            "value": 100 * share,
            "unit": "%",
            "baseline": None,
            "ratio": 1 + share,
            "target": "<= 1.02",
        },
    ]
    print_rows(rows)
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--rate", type=float, default=500.0)
    args = parser.parse_args()
    main(args.quick, rounds=args.rounds, seconds=args.seconds, rate=args.rate)
