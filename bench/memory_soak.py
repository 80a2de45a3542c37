"""Memory soak: `clickbus run` (one process, the notifier inside it) under a steady click rate, traced.

    python -m bench.memory_soak --minutes 30 --rate 100 [--click-window-s S] [--no-trace]

The service runs under `tracemalloc` (unless `--no-trace`) in a wrapper that snapshots it every
`--every-s` seconds into the run's directory. At the end the script prints the RSS and traced
totals over time, their slope in MiB per minute over the second half of the run, and the
allocation sites that grew most between the first snapshot after warm-up and the last one.
The slope of the second half is what tells growth from warm-up: caches and the dedup windows
fill first, then stay level once they hold a window's worth of clicks.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from tests.chaos.load import ClickLoad
from tests.chaos.stack import Stack, rss_mib
from tests.support.bidder import BidderStub

MEMBER = 13
WARMUP_S = 60.0

# The wrapper the service runs in: a daemon thread snapshots tracemalloc, then the CLI runs as usual.
TRACED_RUN = """
import sys, threading, time, tracemalloc
from pathlib import Path
out, every = Path(sys.argv[1]), float(sys.argv[2])
def snapshots():
    n = 0
    while True:
        time.sleep(every)
        tracemalloc.take_snapshot().dump(str(out / f"{n:04d}.snap"))
        n += 1
threading.Thread(target=snapshots, daemon=True).start()
from clickbus.cli import main
sys.exit(main(sys.argv[3:]))
"""


def slope_per_min(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MiB) samples, in MiB per minute."""
    n = len(samples)
    if n < 2:
        return 0.0
    mean_t = sum(t for t, _ in samples) / n
    mean_v = sum(v for _, v in samples) / n
    var = sum((t - mean_t) ** 2 for t, _ in samples)
    cov = sum((t - mean_t) * (v - mean_v) for t, v in samples)
    return 60.0 * cov / var if var else 0.0


def growth(first: Path, last: Path, top: int) -> list[str]:
    """The allocation sites that grew most between two snapshots, grouped by their innermost frames."""
    keep = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen importlib._bootstrap>")]
    before = tracemalloc.Snapshot.load(str(first)).filter_traces(keep)
    after = tracemalloc.Snapshot.load(str(last)).filter_traces(keep)
    lines = []
    for stat in after.compare_to(before, "traceback")[:top]:
        innermost = reversed(list(stat.traceback)[-4:])  # frames run from the oldest to the innermost
        where = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in innermost)
        lines.append(f"{stat.size_diff / 2**20:+8.2f} MiB {stat.count_diff:+9d} blocks  {where}")
    return lines


def start_service(stack: Stack, snapshots: Path, every_s: float, trace: bool) -> None:
    """Start the stack's edge (with its in-process notifier) under the tracing wrapper."""
    edge = stack.edge
    run = ["run", "--config", str(edge.config_path), "--workers", "1"]
    argv = [sys.executable, "-X", "tracemalloc=6", "-c", TRACED_RUN, str(snapshots), str(every_s), *run]
    if not trace:
        argv = [sys.executable, "-m", "clickbus", *run]
    edge.listening_before = edge.listening()
    with edge.stderr_path.open("ab") as err:
        edge.process = subprocess.Popen(argv, stderr=err, stdout=subprocess.DEVNULL)
    edge.wait_ready()


async def soak(args: argparse.Namespace, directory: Path) -> None:
    stub = BidderStub()
    await stub.start()
    notifier = {"click_window_s": args.click_window_s} if args.click_window_s else {}
    stack = Stack(directory, {MEMBER: stub.url}, edge_notifier=True, notifier_settings=notifier)
    snapshots = directory / "snapshots"
    snapshots.mkdir()
    samples: list[tuple[float, float]] = []
    try:
        start_service(stack, snapshots, args.every_s, not args.no_trace)
        assert stack.edge.process is not None
        pid = stack.edge.process.pid
        load = await ClickLoad(stack.edge.url, stack.keyring, (MEMBER,), concurrency=8, rate_per_s=args.rate).start()
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < args.minutes * 60:
            samples.append((elapsed, rss_mib(pid)))
            print(f"{elapsed / 60:6.1f} min  rss {samples[-1][1]:6.1f} MiB  delivered {len(stub.received)}", flush=True)
            await asyncio.sleep(min(args.every_s, args.minutes * 60 - elapsed))
        samples.append((time.monotonic() - started, rss_mib(pid)))
        await load.stop()
        sent = len(load.statuses)
        non_302 = sum(1 for status in load.statuses.values() if status != 302)
    finally:
        stack.stop()
        await stub.stop()
    second_half = [(t, v) for t, v in samples if t >= samples[-1][0] / 2]
    print(f"\nclicks sent {sent} ({sent / samples[-1][0]:.1f}/s), non-302 answers {non_302}")
    print(f"RSS {samples[0][1]} -> {samples[-1][1]} MiB (max {max(v for _, v in samples)})")
    print(f"RSS slope, whole run {slope_per_min(samples):+.3f} MiB/min, second half {slope_per_min(second_half):+.3f}")
    traced_report(sorted(snapshots.glob("*.snap")), args.every_s, args.top)


def traced_report(files: list[Path], every_s: float, top: int) -> None:
    """Traced totals over the run, their second-half slope, and the sites that grew after warm-up."""
    warm = [f for n, f in enumerate(files) if (n + 1) * every_s >= WARMUP_S]
    if len(warm) < 2:
        return
    totals = []
    for n, f in enumerate(files):
        stats = tracemalloc.Snapshot.load(str(f)).statistics("filename")
        totals.append(((n + 1) * every_s, sum(s.size for s in stats) / 2**20))
    half = [(t, v) for t, v in totals if t >= totals[-1][0] / 2]
    print(f"traced {totals[0][1]:.1f} -> {totals[-1][1]:.1f} MiB, second half {slope_per_min(half):+.3f} MiB/min")
    print(f"\ngrowth from {warm[0].name} to {warm[-1].name}:")
    print("\n".join(growth(warm[0], warm[-1], top)))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.memory_soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=100.0, help="clicks per second")
    parser.add_argument("--every-s", type=float, default=60.0, help="seconds between samples and snapshots")
    parser.add_argument("--click-window-s", type=float, help="notifier.click_window_s (default: the config's)")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--no-trace", action="store_true", help="RSS only, without tracemalloc's own overhead")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="clickbus-memsoak-") as directory:
        asyncio.run(soak(args, Path(directory)))


if __name__ == "__main__":
    main()
