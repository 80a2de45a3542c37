"""The notifier SIGKILLed mid-stream (deliveries in flight) and started again, under click load."""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path

from tests.chaos.accounting import Figures, tally
from tests.chaos.load import ClickLoad
from tests.chaos.params import Params
from tests.chaos.stack import Stack, deliveries, drain
from tests.support.bidder import BidderStub
from tests.support.waiting import eventually

DOWN_S = 1.0
MID_STREAM = 50  # deliveries since the last start before each kill


def _received(stub: BidderStub, count: int) -> bool:
    return len(stub.received) >= count


async def run(directory: Path, params: Params) -> Figures:
    stub = BidderStub(delay_s=0.05)  # slow enough that every kill lands with deliveries in flight
    await stub.start()
    stack = Stack(directory, {13: stub.url})
    received_at_kills: list[int] = []
    try:
        stack.edge.start()
        stack.notifier.start()
        load = await ClickLoad(stack.edge.url, stack.keyring, (13,), rate_per_s=params.rate_per_s).start()
        for _ in range(params.notifier_kills):
            await eventually(functools.partial(_received, stub, len(stub.received) + MID_STREAM), timeout_s=20.0)
            received_at_kills.append(len(stub.received))
            stack.notifier.kill()
            await asyncio.sleep(DOWN_S)
            stack.notifier.start()
        await asyncio.sleep(2.0)
        await load.stop()
        records, took = await drain(stack, [stub], params.settle_s)
        stack.stop_notifier()
        figures = tally(
            "notifier-kill",
            load.statuses,
            records,
            deliveries([stub]),
            await stack.dead_letters(),
            notes=[
                f"notifier (clickbus notifier) SIGKILLed {params.notifier_kills} times mid-stream, down {DOWN_S} s each"
            ],
            bidder_requests_at_kills=received_at_kills,
            settled_in_s=took,
            exit_codes=stack.exit_codes,
        )
    finally:
        stack.stop()
        await stub.stop()
    return figures
