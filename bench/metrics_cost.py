"""The cost of metrics on the redirect path: throughput with every metric on against metrics off, same run.

Metrics off is a `Metrics` whose methods do nothing (only the clock reads stay), served by the
same code as `clickbus run` (one uvloop worker, SO_REUSEPORT site, multiprocess sample files).
The log lives on tmpfs (when there is one) so that fsync latency, which varies a lot from round to
round on a disk, does not hide a CPU cost. Rounds alternate off/on to spread drift evenly. The
main figure is the server's CPU time per redirect (from /proc), which other load on the machine
moves far less than throughput; throughput medians are printed too, and the CPU time the metric
calls of one redirect take, measured directly.
Target: metrics cost <= 5% of redirect throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.load import Server, generator, print_rows, requests_per_s
from clickbus.metrics import BreakerState, Metrics, create_metrics, use_multiprocess_dir


class MetricsOff(Metrics):
    """Every metric call a no-op."""

    def click(self, source: str, reason: str | None) -> None: ...
    def impression(self, source: str, reason: str | None) -> None: ...
    def insertion(self, outcome: str) -> None: ...
    def log_append(self, topic: str, seconds: float, ok: bool) -> None: ...
    def redirect(self, status: int, seconds: float) -> None: ...
    def spool(self, records: int, oldest_age_s: float) -> None: ...
    def delivery(self, member_id: int, status: str) -> None: ...
    def retry_depth(self, records: int) -> None: ...
    def dead_letter(self, member_id: int) -> None: ...
    def consumer_lag(self, group: str, topic: str, partition: int, records: int) -> None: ...
    def breaker(self, member_id: int, state: BreakerState) -> None: ...
    def verdict(self, topic: str, reason: str | None) -> None: ...
    def callback_latency(self, seconds: float) -> None: ...
    def refusal(self, member_id: int) -> None: ...
    def log_ready(self, ready: bool) -> None: ...


def serve(mode: str, config_path: str) -> None:
    """Serve the edge like `clickbus run`, with metrics on or off."""
    from clickbus import config as configuration
    from clickbus.edge import create_admin_app, create_app
    from clickbus.edge.serve import serve as serve_edge
    from clickbus.runtime import new_loop

    config = configuration.load(config_path)
    use_multiprocess_dir(config.data_dir / "metrics", clean=True)
    real = create_metrics()
    metrics = real if mode == "on" else MetricsOff(**{f: getattr(real, f) for f in Metrics.__dataclass_fields__})
    with asyncio.Runner(loop_factory=new_loop) as runner:
        public = create_app(config, metrics=metrics)
        runner.run(serve_edge(public, create_admin_app(public), config))


def calls_cost_us(n: int = 100_000) -> float:
    """Microseconds of CPU for the metric calls one redirect makes, in multiprocess mode."""
    use_multiprocess_dir(Path(tempfile.mkdtemp(prefix="clickbus-metrics-")), clean=True)
    metrics = create_metrics()
    started = time.process_time()
    for _ in range(n):
        metrics.log_append("clicks", 0.002, True)
        metrics.click("redirect", None)
        metrics.redirect(302, 0.003)
    return (time.process_time() - started) / n * 1e6


def _round(mode: str, seconds: float, connections: int) -> tuple[float, float]:
    """Redirects per second, and the server's CPU microseconds per redirect."""
    with Server([sys.executable, "-m", "bench.metrics_cost", "--serve", mode], memory=True) as server:
        url = server.click_url()
        requests_per_s(url, duration_s=1, connections=connections, threads=1)
        cpu, started = server.cpu_seconds(), time.monotonic()
        rps = requests_per_s(url, duration_s=seconds, connections=connections, threads=1)
        served = rps * (time.monotonic() - started)
        return rps, (server.cpu_seconds() - cpu) / served * 1e6


def main(
    quick: bool = False, *, rounds: int | None = None, seconds: float | None = None, connections: int = 32
) -> list[dict[str, object]]:
    rounds = rounds or (2 if quick else 5)
    seconds = seconds or (2.0 if quick else 3.0)
    print(f"metrics cost: load by {generator()}, {rounds} pairs of {seconds:.0f}s rounds, {connections} connections")
    pairs = [(_round("off", seconds, connections), _round("on", seconds, connections)) for _ in range(rounds)]
    for (off, off_cpu), (on, on_cpu) in pairs:
        print(f"  round: off {off:8.1f}/s {off_cpu:6.1f} us/req   on {on:8.1f}/s {on_cpu:6.1f} us/req")
    # The machine's other load shifts whole stretches of rounds: compare within each off/on pair.
    cpu_ratio = statistics.median(on_cpu / off_cpu for (_, off_cpu), (_, on_cpu) in pairs)
    rps_ratio = statistics.median(on / off for (off, _), (on, _) in pairs)
    cpu_off = statistics.median(c for (_, c), _ in pairs)
    rps_off = statistics.median(r for (r, _), _ in pairs)
    per_call = calls_cost_us(20_000 if quick else 100_000)
    rows: list[dict[str, object]] = [
        {
            "name": "server CPU per redirect, metrics off",
            "value": cpu_off,
            "unit": "us",
            "baseline": None,
            "ratio": None,
            "target": "baseline",
        },
        {
            "name": "server CPU per redirect, metrics on",
            "value": cpu_off * cpu_ratio,
            "unit": "us",
            "baseline": cpu_off,
            "ratio": cpu_ratio,
            "target": "<= 1.05 (median pair ratio)",
        },
        {
            "name": "redirects/s, metrics off",
            "value": rps_off,
            "unit": "req/s",
            "baseline": None,
            "ratio": None,
            "target": "baseline",
        },
        {
            "name": "redirects/s, metrics on",
            "value": rps_off * rps_ratio,
            "unit": "req/s",
            "baseline": rps_off,
            "ratio": rps_ratio,
            "target": ">= 0.95 (median pair ratio)",
        },
        {
            "name": "metric calls of one redirect (CPU)",
            "value": per_call,
            "unit": "us",
            "baseline": cpu_off,
            "ratio": per_call / cpu_off,
            "target": "<= 0.05 of a redirect's CPU",
        },
    ]
    print_rows(rows)
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--serve", choices=["on", "off"], help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--seconds", type=float)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.config)
    else:
        main(args.quick, rounds=args.rounds, seconds=args.seconds)
