"""`make bench`: run every benchmark and print one table, each figure beside its same-run baseline.

`python -m bench [--quick] [NAME ...]` runs the named benchmark modules (default: all).
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
from typing import Any

from bench.load import met, pinning

BENCHES = (
    "insertion",
    "redirect",
    "beacon",
    "pixel",
    "kafka_append",
    "delivery",
    "metrics_cost",
    "console_cost",
    "scaling",
    "retention",
    "reports",
)
REPRODUCE = """Reproduce with `make bench` (all, several rounds each, medians) or
`.venv/bin/python -m bench [--quick] NAME ...`. Every figure is measured beside its
baseline in the same run; compare ratios, not absolute figures, across machines.

The HTTP benchmarks pin the server process, all its threads, to core 0 and the load
generator (wrk; an aiohttp client loop where wrk is missing) to core 1 with `taskset`
(`bench/load.py`), so that server and load never take turns on one core. Their figure is
the server's CPU time per request (all its threads and child processes, from /proc), and
the ratio is the baseline's CPU per request over ours: on a machine that other work
shares, CPU per request moves far less than requests/s, which each row's note gives.
A requests/s ratio far from the CPU ratio says the run was disturbed.
`met` says whether the ratio meets its target. `python -m bench.profile TARGET` shows where
a server's CPU goes under the same load.
`python -m bench.retention --full` runs the retention check for 10 minutes (`make bench`: 30 s).
Where each target stands, and why: docs/targets.md."""


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")), "unknown CPU")
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}"
    )


def _cpuinfo() -> list[str]:
    try:
        with open("/proc/cpuinfo") as info:
            return info.readlines()
    except OSError:
        return []


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| benchmark | figure | baseline | ratio | target | met |", "|---|---|---|---|---|---|"]
    for row in rows:
        named = f" ({row['baseline_name']})" if row.get("baseline_name") else ""
        base = row.get("baseline")
        baseline = f"{base:,.1f}{named}" if base and base < 100 else f"{base:,.0f}{named}" if base else "-"
        ratio = f"{row['ratio']:.2f}" if row.get("ratio") is not None else "-"
        verdict = row["met"] if "met" in row else met(row)
        shown = "-" if verdict is None else "yes" if verdict else "**no**"
        lines.append(
            f"| {row['name']} | {row['value']:,.1f} {row['unit']} | {baseline} | {ratio} | {row['target']} | {shown} |"
        )
    details = [f"- {row['name']}: {row['detail']}" for row in rows if row.get("detail")]
    return "\n".join(lines + (["", *details] if details else []))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short runs, one round")
    parser.add_argument("--write", metavar="PATH", help="also write the table as Markdown (docs/BENCHMARKS.md)")
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"benchmarks to run (default: all of {', '.join(BENCHES)})"
    )
    args = parser.parse_args()
    unknown = set(args.names) - set(BENCHES)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    rows: list[dict[str, Any]] = []
    for name in args.names or BENCHES:
        print(f"== {name}")
        rows += importlib.import_module(f"bench.{name}").main(quick=args.quick)
    report = f"Machine: {machine()}\n\nHTTP benchmarks: {pinning()}.\n\n{table(rows)}\n"
    print("\n" + report)
    if args.write:
        with open(args.write, "w") as out:
            out.write(f"# Benchmarks\n\n{REPRODUCE}\n\n{report}")


if __name__ == "__main__":
    main()
