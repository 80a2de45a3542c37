"""The supervisor of `clickbus run --workers 2` SIGKILLed under click load, again and again: no child outlives it.

Its two workers and its notifier must stop on their own (the parent-death signal and the lifeline
pipe) within a bound, and the next run must start at once on the same data directory and ports.
Before #16 each kill left three orphans that shared the port with the next run and, each notifier
reading every partition, delivered every click several times.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

from tests.chaos.accounting import Figures, tally
from tests.chaos.load import ClickLoad
from tests.chaos.params import Params
from tests.chaos.stack import Stack, deliveries, settle
from tests.support.bidder import BidderStub
from tests.support.processes import survivors_async

WORKERS = 2
ORPHAN_BOUND_S = 15.0  # the edge's drain (5 s) and the supervisor's grace (5 s), and room for a loaded machine


async def run(directory: Path, params: Params) -> Figures:
    stub = BidderStub(delay_s=0.02)  # deliveries are in flight at each kill
    await stub.start()
    stack = Stack(directory, {13: stub.url}, edge_workers=WORKERS, edge_notifier=True)
    marker = str(stack.edge.config_path)  # on the command line of the supervisor and of every child
    orphans: list[int] = []
    gone_in_s: list[float] = []
    try:
        await asyncio.to_thread(stack.edge.start)
        load = await ClickLoad(stack.edge.url, stack.keyring, (13,), rate_per_s=params.rate_per_s).start()
        for _ in range(params.supervisor_kills):
            await asyncio.sleep(params.supervisor_kill_every_s)
            killed_at = time.monotonic()
            stack.edge.signal(signal.SIGKILL)
            await asyncio.to_thread(stack.edge.wait)
            left = await survivors_async(marker, within_s=ORPHAN_BOUND_S)
            gone_in_s.append(round(time.monotonic() - killed_at, 1))
            orphans.append(len(left))
            for pid in left:  # so that the scenario can go on to count the rest
                os.kill(pid, signal.SIGKILL)
            await asyncio.to_thread(stack.edge.start)  # the same data_dir and ports, at once
        await asyncio.sleep(params.supervisor_kill_every_s)
        await load.stop()
        records = await stack.records()
        took = await settle(stack, [stub], records, params.settle_s)  # the run's own notifier delivers them
        await asyncio.to_thread(stack.stop_edge)
        figures = tally(
            "supervisor-kill",
            load.statuses,
            records,
            deliveries([stub]),
            await stack.dead_letters(),
            notes=[
                f"supervisor of clickbus run --workers {WORKERS} (with its notifier) SIGKILLed "
                f"{params.supervisor_kills} times under load, started again each time once its children were gone"
            ],
            orphans_after_each_kill=orphans,
            children_gone_in_s=gone_in_s,
            unanswered_while_down=sum(1 for s in load.statuses.values() if s != 302),
            settled_in_s=took,
            exit_codes=stack.exit_codes,
            failures=[f"{n} orphans after kill {i}" for i, n in enumerate(orphans, 1) if n],
        )
    finally:
        stack.stop()
        await stub.stop()
    return figures
