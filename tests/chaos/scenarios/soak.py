"""A soak at about 70 % of the measured peak click rate (the slower of edge and notifier).

It reports the memory growth (RSS) of the edge and the notifier processes, and errors.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.chaos.accounting import Figures, tally
from tests.chaos.load import ClickLoad
from tests.chaos.params import Params
from tests.chaos.stack import Stack, deliveries, drain, rss_mib, settle
from tests.support.bidder import BidderStub

SHARE_OF_PEAK = 0.7
PROBE_CONCURRENCY = 32
SAMPLES = 10


async def peak(stack: Stack, stub: BidderStub, params: Params) -> tuple[ClickLoad, float, float]:
    """Closed-loop clicks for a while, then their delivery: the edge's 302s per second and the
    notifier's deliveries per second while it worked through that backlog (the probe's clicks are accounted too)."""
    probe = await ClickLoad(stack.edge.url, stack.keyring, (13,), concurrency=PROBE_CONCURRENCY).start()
    await asyncio.sleep(params.peak_probe_s)
    await probe.stop()
    await settle(stack, [stub], await stack.records(), params.settle_s)
    times = sorted(r.at for r in stub.received)
    delivery_rate = len(times) / max(times[-1] - times[0], 1e-3) if times else 0.0
    return probe, len(probe.answered()) / params.peak_probe_s, delivery_rate


def memory(stack: Stack) -> tuple[float, float]:
    assert stack.edge.process is not None and stack.notifier.process is not None
    return rss_mib(stack.edge.process.pid), rss_mib(stack.notifier.process.pid)


async def run(directory: Path, params: Params) -> Figures:
    stub = BidderStub()
    await stub.start()
    stack = Stack(directory, {13: stub.url})
    try:
        stack.edge.start()
        stack.notifier.start()
        probe, edge_rate, delivery_rate = await peak(stack, stub, params)
        peak_rate = min(edge_rate, delivery_rate)
        rate = round(SHARE_OF_PEAK * peak_rate, 1)
        load = await ClickLoad(stack.edge.url, stack.keyring, (13,), concurrency=16, rate_per_s=rate).start()
        started, samples = time.monotonic(), []
        await asyncio.sleep(min(5.0, params.soak_s / SAMPLES))  # warmed up: the first sample is the baseline
        while (elapsed := time.monotonic() - started) < params.soak_s:
            samples.append(memory(stack))
            await asyncio.sleep(min(params.soak_s / SAMPLES, params.soak_s - elapsed))
        samples.append(memory(stack))
        await load.stop()
        achieved = round(len(load.statuses) / (time.monotonic() - started), 1)
        records, took = await drain(stack, [stub], params.settle_s)
        (edge0, notifier0), (edge1, notifier1) = samples[0], samples[-1]
        stack.stop_notifier()
        non_302, errors = sum(1 for s in load.statuses.values() if s != 302), stack.errors()
        figures = tally(
            "soak",
            {**probe.statuses, **load.statuses},
            records,
            deliveries([stub]),
            await stack.dead_letters(),
            notes=[
                f"{params.soak_s:.0f} s at {SHARE_OF_PEAK:.0%} of the peak measured first (the slower of edge and "
                f"notifier; {params.peak_probe_s:.0f} s closed loop; its clicks are counted too)"
            ],
            peak_edge_302_per_s=round(edge_rate, 1),
            peak_deliveries_per_s=round(delivery_rate, 1),
            target_clicks_per_s=rate,
            achieved_clicks_per_s=achieved,
            edge_rss_mib=f"{edge0} -> {edge1} (max {max(e for e, _ in samples)})",
            notifier_rss_mib=f"{notifier0} -> {notifier1} (max {max(n for _, n in samples)})",
            non_302_answers=non_302,
            error_log_lines=errors,
            failures=["errors during the soak"] if non_302 or errors else [],
            settled_in_s=took,
            exit_codes=stack.exit_codes,
        )
    finally:
        stack.stop()
        await stub.stop()
    return figures
