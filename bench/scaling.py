"""Redirect throughput with 1, 2, ... N workers (`clickbus run --workers n`) against the single-worker figure.

Target: n workers serve >= 0.8 * n times one worker's redirects, while cores last (the load
generator needs cores too: on a small machine the curve flattens early, and the figures say so).
Beside throughput, the workers' CPU time per redirect (target <= 1.1 x one worker's): where it
stays flat as n grows, the workers scale until the cores run out; where it climbs, they contend
(a shared log file, a lock). n workers are pinned to cores 0..n-1 (all their threads), the load
to core 1 (`bench.load`): with 2 workers on a 2-core machine the load shares core 1 with one of them,
so there a last point runs both workers on core 0, which separates what workers cost each other from
what sharing a core with the load costs.
Usage: `python -m bench.scaling [--workers N] [--seconds S] [--connections C] [--quick]`.
"""

from __future__ import annotations

import argparse
import time

from bench.load import SERVER_CORES, Server, clickbus_argv, cores, pinning, print_rows, requests_per_s


def measure(workers: int, *, seconds: float, connections: int, pinned: str | None = None) -> tuple[float, float]:
    """Redirects per second, and the workers' CPU microseconds per redirect (on cores 0..n-1 unless `pinned`)."""
    # the edge alone: in production the notifier runs as its own process, and here it would only add load
    pinned = pinned or ",".join(str(core) for core in range(min(workers, cores())))
    with Server(clickbus_argv("run", "--workers", str(workers), "--no-notifier"), cores=pinned) as server:
        url = server.click_url()
        requests_per_s(url, duration_s=1, connections=connections)  # warm up
        cpu, started = server.cpu_seconds(), time.monotonic()
        rps = requests_per_s(url, duration_s=seconds, connections=connections)
        served = rps * (time.monotonic() - started)
        return rps, (server.cpu_seconds() - cpu) / served * 1e6


def cpu_row(name: str, cpu: float, single_cpu: float | None) -> dict[str, object]:
    """CPU microseconds per redirect, against one worker's (None: this is the one worker's)."""
    return {
        "name": name,
        "value": cpu,
        "unit": "us",
        "baseline": single_cpu,
        "ratio": cpu / single_cpu if single_cpu else None,
        "target": "<= 1.1x one worker's" if single_cpu else "baseline",
    }


def main(
    quick: bool = False, *, max_workers: int | None = None, seconds: float | None = None, connections: int = 64
) -> list[dict[str, object]]:
    top = max_workers or (2 if quick else max(2, cores()))
    seconds = seconds or (2.0 if quick else 5.0)
    print(f"scaling: {cores()} cores, {pinning()}, {connections} connections, {seconds:.0f}s per point")
    rows: list[dict[str, object]] = []
    single = single_cpu = 0.0
    for n in range(1, top + 1):
        rps, cpu = measure(n, seconds=seconds, connections=connections)
        single, single_cpu = single or rps, single_cpu or cpu
        rows.append(
            {
                "name": f"redirects/s with {n} worker{'s' if n > 1 else ''}",
                "value": rps,
                "unit": "req/s",
                "baseline": single if n > 1 else None,
                "ratio": rps / single if n > 1 else None,
                "target": f">= {0.8 * n:.1f}x one worker" if n > 1 else "baseline",
            }
        )
        # flat CPU per redirect means the workers do not get in each other's way (locks, the log file)
        rows.append(
            cpu_row(f"CPU per redirect with {n} worker{'s' if n > 1 else ''}", cpu, single_cpu if n > 1 else None)
        )
    if top >= 2 and cores() == 2:
        # On two cores the second worker shares core 1 with the load generator, whose switches and cache misses
        # it pays in CPU per redirect. Two workers on core 0 alone pay only what they cost each other (the
        # shared log directory, SO_REUSEPORT's spread, smaller batches per wake-up): the figure that says
        # whether workers scale where there are cores for them.
        _, cpu = measure(2, seconds=seconds, connections=connections, pinned=SERVER_CORES)
        rows.append(cpu_row(f"CPU per redirect with 2 workers, both on core {SERVER_CORES}", cpu, single_cpu))
    print_rows(rows)
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, help="largest worker count (default: cores)")
    parser.add_argument("--seconds", type=float)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    main(args.quick, max_workers=args.workers, seconds=args.seconds, connections=args.connections)
