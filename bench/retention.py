"""Retention of the embedded log: at a steady click rate the log directory stays under its bound.

`clickbus run --no-notifier` with a small `log.embedded.retention_mb` and `segment_mb` takes
redirects at a steady rate (an aiohttp client paced on the load core, `bench.load`) while the
log directory's size is sampled every second. Retention deletes whole closed segments once a
partition holds more than `retention_mb`, checked when a segment rolls, so a partition may hold
up to `retention_mb + segment_mb` just before a roll: that is the bound, per partition written.
`make bench` runs a short version (30 s); `python -m bench.retention --full` runs 10 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.load import LOAD_CORE, Server, can_pin, clickbus_argv, pinning, print_rows
from clickbus import config as configuration

RETENTION_MB = 8
SEGMENT_MB = 1
RATE_PER_S = 1500
CONNECTIONS = 16
MB = 1024 * 1024
SETTINGS = f"[log.embedded]\nretention_mb = {RETENTION_MB}\nsegment_mb = {SEGMENT_MB}\n"


def directory_bytes(path: Path) -> int:
    """Bytes of every file under `path` (files deleted while walking count as gone)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except FileNotFoundError:
                continue
    return total


def partitions(path: Path) -> int:
    """Directories under `path` holding segment files: one per topic each writer process appends to."""
    return sum(1 for root, _, files in os.walk(path) if any(name.endswith(".log") for name in files))


async def paced(url: str, rate: float, seconds: float) -> int:
    """Send `rate` GETs a second for `seconds` over CONNECTIONS connections; the number answered 302."""
    done = 0
    started = time.monotonic()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONNECTIONS)) as session:

        async def sender(lane: int) -> None:
            nonlocal done
            n = 0
            while (due := started + (n * CONNECTIONS + lane) / rate) < started + seconds:
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                async with session.get(url, allow_redirects=False) as response:
                    if response.status != 302:
                        raise RuntimeError(f"{response.status} from {url}")
                done += 1
                n += 1

        await asyncio.gather(*(sender(lane) for lane in range(CONNECTIONS)))
    return done


def _load_thread(url: str, rate: float, seconds: float, answered: list[int]) -> None:
    if can_pin():
        os.sched_setaffinity(threading.get_native_id(), {LOAD_CORE})
    answered.append(asyncio.run(paced(url, rate, seconds)))


def run(seconds: float, rate: float) -> tuple[int, int, int, int] | None:
    """Largest directory size seen, bytes at the end, partitions written, redirects answered.

    None when this build's embedded log is not a directory of segments (the SQLite log has no retention).
    """
    with Server(clickbus_argv("run", "--no-notifier"), config=SETTINGS) as server:
        log_dir = configuration.load(server.config_path, env={}).log_path
        if not log_dir.is_dir():
            return None
        answered: list[int] = []
        load = threading.Thread(target=_load_thread, args=(server.click_url(), rate, seconds, answered))
        load.start()
        largest = 0
        while load.is_alive():
            largest = max(largest, directory_bytes(log_dir))
            load.join(1.0)
        return largest, directory_bytes(log_dir), partitions(log_dir), answered[0] if answered else 0


def main(quick: bool = False, *, full: bool = False) -> list[dict[str, Any]]:
    seconds = 600.0 if full else 30.0
    measured = run(seconds, RATE_PER_S)
    if measured is None:
        print("retention: skipped, this build's embedded log is not a directory of segments")
        return []
    largest, final, written, answered = measured
    bound = max(1, written) * (RETENTION_MB + SEGMENT_MB) * MB
    rows = [
        {
            "name": f"retention: largest log directory, {seconds / 60:.1f} min at {RATE_PER_S}/s",
            "value": largest / MB,
            "unit": "MiB",
            "baseline": bound / MB,
            "baseline_name": f"bound: {written} partition(s) x (retention_mb {RETENTION_MB} + segment_mb {SEGMENT_MB})",
            "ratio": largest / bound,
            "target": "<= 1.0",
            "detail": f"{pinning()}; {answered} redirects answered, {final / MB:.1f} MiB at the end",
        }
    ]
    print_rows(rows)
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--full", action="store_true", help="10 minutes instead of 30 seconds")
    main(full=parser.parse_args().full)
