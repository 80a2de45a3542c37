"""Bidders misbehaving together: 50 % 500s with 10 % timeouts, one blackholed, one answering 429 with Retry-After.

Short retry settings make it converge: the flaky and throttling bidders end
delivered, the blackholed one's clicks end in the dead-letter topic once the
retry horizon passes (its breaker parks them meanwhile).
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from tests.chaos.accounting import Figures, tally
from tests.chaos.load import ClickLoad
from tests.chaos.params import Params
from tests.chaos.stack import Blackhole, Stack, deliveries, drain
from tests.support.bidder import BidderStub

FLAKY, BLACKHOLED, THROTTLING, HEALTHY = 21, 22, 23, 24
TIMEOUT_S = 0.5
SCRIPT_LENGTH = 20_000
THROTTLED = 5  # 429s before it accepts
BREAKER_FAILURES = 20  # the flaky bidder fails 60 % of attempts: 5 in a row is common, 20 is not


def flaky_script(seed: int = 7) -> list[str]:
    """Per attempt: 50 % 500, 10 % no answer (past the member's timeout), 40 % 200."""
    return random.Random(seed).choices(["500", "hang", "200"], weights=[50, 10, 40], k=SCRIPT_LENGTH)


async def run(directory: Path, params: Params) -> Figures:
    flaky = BidderStub(script=flaky_script())
    throttling = BidderStub(script=["429"] * THROTTLED, retry_after="1")
    healthy = BidderStub()
    stubs = [flaky, throttling, healthy]
    for stub in stubs:
        await stub.start()
    blackhole = Blackhole()
    members = {FLAKY: flaky.url, BLACKHOLED: blackhole.url, THROTTLING: throttling.url, HEALTHY: healthy.url}
    notifier = {
        "retry_horizon_s": params.retry_horizon_s,
        "breaker_failures": BREAKER_FAILURES,
        "breaker_cooldown_s": 1.0,
    }
    stack = Stack(directory, members, member_settings={"timeout_s": TIMEOUT_S}, notifier_settings=notifier)
    try:
        stack.edge.start()
        stack.notifier.start()
        load = await ClickLoad(stack.edge.url, stack.keyring, tuple(members), rate_per_s=params.rate_per_s).start()
        await asyncio.sleep(params.bidder_clicks_s)
        await load.stop()
        records, took = await drain(stack, stubs, params.retry_horizon_s + params.settle_s)
        dead = await stack.dead_letters()
        by_member = {m: [str(r["click_id"]) for r in records if r["member_id"] == m] for m in members}
        stack.stop_notifier()
        figures = tally(
            "bidders",
            load.statuses,
            records,
            deliveries(stubs),
            dead,
            notes=[
                f"member {FLAKY}: 50 % 500, 10 % timeout (> {TIMEOUT_S} s), 40 % 200 per attempt; "
                f"{BLACKHOLED}: blackholed; {THROTTLING}: 429 Retry-After 1 s for its first {THROTTLED} requests; "
                f"{HEALTHY}: healthy",
                f"retry_base_s 0.1, retry_max_delay_s 1, retry_horizon_s {params.retry_horizon_s}, "
                f"breaker {BREAKER_FAILURES} failures / 1 s (doubling per failed probe)",
            ],
            dead_lettered_by_member={m: len(set(ids) & set(dead)) for m, ids in by_member.items()},
            attempts_by_member={
                FLAKY: len(flaky.received),
                THROTTLING: len(throttling.received),
                HEALTHY: len(healthy.received),
            },
            settled_in_s=took,
            exit_codes=stack.exit_codes,
        )
    finally:
        stack.stop()
        for stub in stubs:
            await stub.stop()
        blackhole.close()
    return figures
