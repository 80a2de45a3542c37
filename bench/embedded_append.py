"""Embedded log appends per second: the segment log against the SQLite log it replaced, in the same run.

Both run one loop in a subprocess under uvloop: CONCURRENCY callers, each awaiting
`EmbeddedLog.append` of a click-sized record (so group commit gathers about as many as a
loaded edge would), for the same time on a fresh directory of the same disk. The SQLite
adapter is the one of `SQLITE_REV`, the last commit that had it, extracted with `git
archive`; without git (or that commit) only the segment log is measured.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.load import print_rows

SQLITE_REV = "54fc471"  # clickbus/log/sqlite.py, before the segment log (#13)
CONCURRENCY = 64
RECORD_BYTES = 600
ROOT = Path(__file__).resolve().parents[1]
LOOP = """
import asyncio, sys, time
from pathlib import Path
from clickbus.log import EmbeddedLog, Topic

async def main(path: str, seconds: float, callers: int, size: int) -> None:
    log = EmbeddedLog(Path(path))
    await log.start()
    value = b'{"pad":"' + b"x" * (size - 10) + b'"}'
    await log.append(Topic.CLICKS, b"warm", value)
    done = 0
    stop = time.perf_counter() + seconds

    async def caller() -> None:
        nonlocal done
        while time.perf_counter() < stop:
            await log.append(Topic.CLICKS, b"key", value)
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    elapsed = time.perf_counter() - started
    await log.stop(10)
    print(done / elapsed)

try:
    import uvloop
    uvloop.install()
except ImportError:
    pass
asyncio.run(main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
"""


def appends_per_s(tree: Path, seconds: float) -> float:
    """Appends/s of the `EmbeddedLog` of the source tree at `tree` (either adapter: both take one path)."""
    sqlite = (tree / "clickbus" / "log" / "sqlite.py").exists()
    with tempfile.TemporaryDirectory(prefix="clickbus-bench-", dir=ROOT) as directory:
        path = Path(directory) / ("log.sqlite3" if sqlite else "log")
        argv = [sys.executable, "-c", LOOP, str(path), str(seconds), str(CONCURRENCY), str(RECORD_BYTES)]
        out = subprocess.run(argv, env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True, check=True)
    return float(out.stdout)


def sqlite_tree(into: Path) -> Path | None:
    """The source tree of `SQLITE_REV` under `into`, or None when git cannot give it."""
    try:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", SQLITE_REV, "clickbus"], capture_output=True)
    except OSError:
        return None
    if archive.returncode != 0:
        return None
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def main(quick: bool = False) -> list[dict[str, Any]]:
    rounds, seconds = (1, 2.0) if quick else (3, 5.0)
    segment, sqlite = [], []
    with tempfile.TemporaryDirectory() as directory:
        old = sqlite_tree(Path(directory))
        for _ in range(rounds):
            segment.append(appends_per_s(ROOT, seconds))
            if old is not None:
                sqlite.append(appends_per_s(old, seconds))
    value = statistics.median(segment)
    baseline = statistics.median(sqlite) if sqlite else None
    row = {
        "name": "embedded log appends (segment log, 1 partition)",
        "value": value,
        "unit": "appends/s",
        "baseline": baseline,
        "baseline_name": f"SQLite log of {SQLITE_REV}",
        "ratio": value / baseline if baseline else None,
        "target": "report",
        "detail": f"{CONCURRENCY} concurrent callers, {RECORD_BYTES}-byte records, {seconds:.0f}s x {rounds}, median",
    }
    print_rows([row])
    return [row]


if __name__ == "__main__":
    main()
