"""Kafka, one bidder hanging, the notifier's appends falling back to its spool: each record counts once.

The broker is frozen (SIGSTOP) for a moment, again and again, under running
click load. Appends in flight miss their budget and are spooled; when the
broker thaws it still takes the sends it had on the wire, and the spool then
ships its copies too (at least once, never lost). So the retry, dead-letter and
deliveries topics get records twice: the parked records of the hanging
bidder's clicks most of all (it never answers, so its clicks are parked again
and again). Each copy of a parked record would start a retry chain of its own:
passing needs no click dead-lettered twice, no click with two terminal
outcomes (`dead`, `delivered`) under different keys, and `clickbus dlq list`
showing each dead-lettered click once, beside the usual no-click-lost check.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

from clickbus.log import open_log
from clickbus.log.port import Topic
from clickbus.notifier import dlq
from tests.chaos.accounting import Figures, tally
from tests.chaos.load import ClickLoad
from tests.chaos.params import Params
from tests.chaos.stack import Blackhole, Stack, deliveries, drain
from tests.support.bidder import BidderStub
from tests.support.kafka_broker import TansuBroker

HANGING, HEALTHY = 31, 32
TIMEOUT_S = 0.5
WARM_S = 2.0
FROZEN_S = 1.0  # past every append budget (50 ms), short of the group session (1 s) plus its heartbeats
THAWED_S = 2.0
TERMINAL = ("dead", "delivered")


def _key(record: Mapping[str, Any]) -> str:
    """A record's idempotency key; a record without one (written before they existed) stands for itself."""
    key = record.get("idempotency_key")
    return key if isinstance(key, str) else orjson.dumps(record).decode()


def copies(records: Iterable[Mapping[str, Any]]) -> int:
    """Records that are byte-for-byte copies of another (what the spool's double write leaves)."""
    seen = Counter(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) for r in records)
    return sum(n - 1 for n in seen.values())


def keys_per_click(records: Iterable[Mapping[str, Any]], click_id: str = "click_id") -> dict[str, set[str]]:
    found: dict[str, set[str]] = defaultdict(set)
    for record in records:
        found[str(record.get(click_id) or record["click"]["click_id"])].add(_key(record))
    return found


async def run(directory: Path, params: Params) -> Figures:
    broker = TansuBroker().start()
    healthy = BidderStub()
    await healthy.start()
    hanging = Blackhole()
    members = {HANGING: hanging.url, HEALTHY: healthy.url}
    notifier = {"retry_horizon_s": params.retry_horizon_s, "breaker_cooldown_s": 1.0}
    member = {"timeout_s": TIMEOUT_S}
    stack = Stack(directory, members, broker=broker, member_settings=member, notifier_settings=notifier)
    try:
        stack.edge.start()
        stack.notifier.start()
        load = await ClickLoad(stack.edge.url, stack.keyring, tuple(members), rate_per_s=params.rate_per_s).start()
        await asyncio.sleep(WARM_S)
        for _ in range(params.edge_kills):  # as many freezes as the broker scenario has kills
            broker.freeze()
            await asyncio.sleep(FROZEN_S)
            broker.thaw()
            await asyncio.sleep(THAWED_S)
        await load.stop()
        records, took = await drain(stack, [healthy], params.retry_horizon_s + params.settle_s)
        listed = await dlq.pending(open_log(stack.config), stack.config.notifier.group)
        stack.stop_notifier()
        dead_records = await stack.records(Topic.DLQ)
        retry_records = await stack.records(Topic.RETRY)
        outcomes = await stack.records(Topic.DELIVERIES)
        dead = keys_per_click(dead_records)
        terminal = keys_per_click(o for o in outcomes if o["outcome"] in TERMINAL)
        dead_twice = sorted(c for c, keys in dead.items() if len(keys) > 1)
        two_chains = sorted(c for c, keys in terminal.items() if len(keys) > 1)
        failures = []
        if dead_twice:
            failures.append(f"{len(dead_twice)} clicks dead-lettered twice, e.g. {dead_twice[:3]}")
        if two_chains:
            failures.append(f"{len(two_chains)} clicks with two retry chains (two final steps), e.g. {two_chains[:3]}")
        if len(listed) != len(dead):
            failures.append(f"dlq list shows {len(listed)} letters for {len(dead)} dead-lettered clicks")
        errors = stack.errors()
        logs = [edge.logs() for edge in stack.edges] + [stack.notifier.stderr_path.read_text()]
        error_messages = Counter(
            str(orjson.loads(line).get("msg"))[:100]
            for text in logs
            for line in text.splitlines()
            if '"level":"error"' in line
        )
        figures = tally(
            "spooled-outcomes",
            load.statuses,
            records,
            deliveries([healthy]),
            list(dead),
            notes=[
                f"Kafka backend (Tansu), broker frozen {params.edge_kills} times for {FROZEN_S} s under running load; "
                f"member {HANGING} hangs (never answers, timeout {TIMEOUT_S} s), member {HEALTHY} is healthy; "
                f"retry_horizon_s {params.retry_horizon_s}",
                "copies: byte-for-byte repeated records per topic (the spool's double writes, and rewrites "
                "after a rebalance); each must count once",
            ],
            copies={"retry": copies(retry_records), "dlq": copies(dead_records), "deliveries": copies(outcomes)},
            records_per_topic={"retry": len(retry_records), "dlq": len(dead_records), "deliveries": len(outcomes)},
            double_dead_letters=len(dead_twice),
            double_retry_chains=len(two_chains),
            dlq_listed=len(listed),
            copies_dropped_by_retry_loop=stack.notifier.stderr_path.read_text().count("(a copy): dropped"),
            error_lines=errors,
            error_messages=dict(error_messages.most_common(3)),
            settled_in_s=took,
            exit_codes=stack.exit_codes,
            failures=failures,
        )
    finally:
        stack.stop()
        await healthy.stop()
        hanging.close()
        if broker.process is not None:
            broker.thaw()
        broker.stop()
    return figures
