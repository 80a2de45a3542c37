"""The edge SIGKILLed repeatedly under click load and started again; the notifier keeps delivering."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from tests.chaos.accounting import Figures, tally
from tests.chaos.load import ClickLoad
from tests.chaos.params import Params
from tests.chaos.stack import Stack, deliveries, drain
from tests.support.bidder import BidderStub


async def run(directory: Path, params: Params) -> Figures:
    stub = BidderStub()
    await stub.start()
    stack = Stack(directory, {13: stub.url})
    try:
        stack.edge.start()
        stack.notifier.start()
        load = await ClickLoad(stack.edge.url, stack.keyring, (13,), rate_per_s=params.rate_per_s).start()
        for _ in range(params.edge_kills):
            await asyncio.sleep(params.edge_kill_every_s)
            stack.edge.signal(signal.SIGKILL)
            await asyncio.to_thread(stack.edge.wait)
            await asyncio.to_thread(stack.edge.start)
        await asyncio.sleep(params.edge_kill_every_s)
        await load.stop()
        records, took = await drain(stack, [stub], params.settle_s)
        stack.stop_notifier()
        figures = tally(
            "edge-kill",
            load.statuses,
            records,
            deliveries([stub]),
            await stack.dead_letters(),
            notes=[
                f"edge (clickbus run, embedded log) SIGKILLed {params.edge_kills} times under load, restarted each time"
            ],
            unanswered_while_down=sum(1 for s in load.statuses.values() if s != 302),
            settled_in_s=took,
            exit_codes=stack.exit_codes,
        )
    finally:
        stack.stop()
        await stub.stop()
    return figures
