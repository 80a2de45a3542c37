"""Where a server's CPU goes under the benchmarks' pinned load: py-spy samples, summed by function.

`python -m bench.profile TARGET [--seconds N] [--top K]` starts TARGET the way the benchmarks do
(pinned to core 0, wrk on core 1), samples every thread of it (and of its children) with py-spy for
N seconds while the load runs, and prints the functions holding the most samples taken while
holding the GIL (Python's CPU; `--all` counts every sample, waits included): inclusive (the
function and what it called) and self (the function's own frames). Beside them it prints the CPU
time (user + system, from /proc) of the main thread, the other threads and any child processes,
because fsync and the kernel's socket work hold no GIL. The collapsed stacks are kept
(`--keep PATH`) for a flame graph. py-spy is a test dependency; it needs ptrace rights over the server.

TARGET is one of: bare (aiohttp's 302), edge (`clickbus run --no-notifier`), notifier (`clickbus run`),
notifier-distinct (`clickbus run` under distinct clicks, each valid), pixel, beacon, bare-pixel, bare-beacon.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from bench import beacon, pixel, redirect
from bench.load import Server, Target, paths_of, requests_per_s


def targets() -> dict[str, Target]:
    return {
        **redirect.targets(),
        "pixel": pixel.EDGE,
        "bare-pixel": pixel.BARE,
        "beacon": beacon.EDGE,
        "bare-beacon": beacon.BARE,
    }


def collapse(path: Path) -> tuple[collections.Counter[str], collections.Counter[str], int]:
    """Samples per function, inclusive and self, from py-spy's raw (collapsed) output; and the total."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [_function(frame) for frame in stack.split(";")[1:]]  # the first is the thread's name
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        if frames:
            own[frames[-1]] += count
    return inclusive, own, total


def cpu_by_thread(pid: int) -> dict[str, float]:
    """CPU seconds so far of `pid`'s main thread, its other threads, and its child processes (with theirs)."""
    ticks = os.sysconf("SC_CLK_TCK")
    split = {"main thread": 0.0, "other threads": 0.0, "child processes": 0.0}
    for task in Path(f"/proc/{pid}/task").iterdir():
        split["main thread" if int(task.name) == pid else "other threads"] += _cpu(task / "stat") / ticks
        for child in (task / "children").read_text().split():
            for child_task in Path(f"/proc/{child}/task").iterdir():
                split["child processes"] += _cpu(child_task / "stat") / ticks
    return split


def _cpu(stat: Path) -> int:
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0
    return int(fields[11]) + int(fields[12])


def _function(frame: str) -> str:
    """`name (path/to/module.py:12)` as `name (module.py)`: one entry per function, not per line."""
    name, _, where = frame.partition(" (")
    module = where.rsplit(":", 1)[0].rstrip(")")
    parts = Path(module).parts
    short = "/".join(parts[-2:]) if parts else module
    return f"{name} ({short})"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("target", choices=sorted(targets()))
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--all", action="store_true", help="count every sample, not only those holding the GIL")
    parser.add_argument("--keep", metavar="PATH", help="also keep the collapsed stacks here")
    args = parser.parse_args()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    target = targets()[args.target]
    with Server(list(target.argv), config=target.config) as server, tempfile.TemporaryDirectory() as directory:
        url, paths = target.url(server), paths_of(target, server)
        requests_per_s(url, connections=args.connections, duration_s=1, json_body=target.json_body, paths=paths)
        raw = Path(args.keep or Path(directory) / "stacks.txt")
        assert server.process is not None
        spy = [py_spy, "record", "--format", "raw", "--subprocesses", "--rate", "250", *([] if args.all else ["--gil"])]
        spy += ["--duration", str(round(args.seconds)), "--pid", str(server.process.pid), "--output", str(raw)]
        recorder = subprocess.Popen(spy, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        load = threading.Thread(
            target=requests_per_s,
            args=(url,),
            kwargs={
                "connections": args.connections,
                "duration_s": args.seconds,
                "json_body": target.json_body,
                "paths": paths,
            },
        )
        before = cpu_by_thread(server.process.pid)
        load.start()
        load.join()
        after = cpu_by_thread(server.process.pid)
        _, errors = recorder.communicate(timeout=args.seconds + 30)
        if recorder.returncode != 0:
            raise SystemExit(f"py-spy failed: {errors.decode().strip()}")
        inclusive, own, total = collapse(raw)
    print(f"CPU of {args.target} under load ({args.seconds:.0f} s):")
    for part, seconds in after.items():
        print(f"{100 * (seconds - before[part]) / args.seconds:6.1f} % of a core  {part}")
    kind = "samples" if args.all else "samples holding the GIL"
    print(f"\n{total} {kind}, all threads")
    for title, counts in (("inclusive", inclusive), ("self", own)):
        print(f"\n{title}:")
        for function, count in counts.most_common(args.top):
            print(f"{100 * count / total:6.1f} %  {function}")


if __name__ == "__main__":
    main()
