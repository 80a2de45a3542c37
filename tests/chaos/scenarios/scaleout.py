"""Scale-out on one Kafka broker: two edges and three notifiers in one group, members killed under load.

Two edges (`clickbus run`, each with its in-process notifier) and one
`clickbus notifier` share a Tansu broker, one signing key and one consumer
group. Clicks go to both edges; true duplicates (one token clicked twice by
one browser, first on one edge, then on the other) run alongside. Each
round SIGKILLs the second edge (its notifier dies with it) and restarts it,
then SIGKILLs the standalone notifier once it holds partitions and restarts
it; the load never pauses. The group rebalances at every kill and restart, so
partitions move between notifiers, which rebuild their dedup windows.

Passing: no click answered 302 is lost, every delivery of a click carries
one `webhook-id`, each pair is delivered once and judged duplicate once, and
no click recorded once is judged a duplicate (a record the edge sent twice,
the at-least-once spool's doing, is rightly judged duplicate once).

An edge stopped while Kafka is slow may leave records in its spool: its own
notifier's outcomes and parked retries, whose clicks' offsets are committed
(the park is durable on the edge's disk). They ship at the edge's next start,
so the accounting starts such an edge once more, without its notifier.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import signal
import time
from collections import Counter, defaultdict
from pathlib import Path

import orjson

from clickbus.log.port import Topic
from clickbus.notifier.outcomes import Outcome
from clickbus.records import Reason
from tests.chaos.accounting import Figures, Pairs, judge_pairs, tally
from tests.chaos.load import FIRST_PAIR_AUCTION, ClickLoad, DuplicatePairs
from tests.chaos.params import Params
from tests.chaos.scenarios.broker import wait_ready
from tests.chaos.stack import Stack, deliveries, settle
from tests.support.bidder import BidderStub
from tests.support.kafka_broker import TansuBroker
from tests.support.service import Service
from tests.support.waiting import eventually

DOWN_S = 2.0  # longer than the group session (1 s): the group rebalances without the dead member first
PAIRS_PER_S = 10.0
PAIR_GAP_S = 2.0  # between a token's two clicks: many pairs straddle a kill and its rebalance
BIDDER_DELAY_S = 0.05  # deliveries are in flight when a notifier dies
# this scenario is about members dying, not bidders: on a loaded machine a stall past the default 2 s timeout
# must not open the breaker for its default 30 s, which outlasts the settling time
BIDDER_TIMEOUT_S = 5.0
BREAKER_COOLDOWN_S = 1.0
JOINED = "notifier started for members"
STOPPING = "SIGTERM: draining"
SPOOL_LEFT = re.compile(r"kafka log stopped with (\d+) records in the spool")


async def verdicts(stack: Stack) -> tuple[set[str], set[str]]:
    """Click ids with a `delivered` outcome, and those judged duplicate, from the deliveries topic."""
    outcomes = await stack.records(Topic.DELIVERIES)
    delivered = {str(o["click_id"]) for o in outcomes if o["outcome"] == Outcome.DELIVERED}
    duplicate = {
        str(o["click_id"]) for o in outcomes if o["outcome"] == Outcome.INVALID and o["reason"] == Reason.DUPLICATE
    }
    return delivered, duplicate


def webhook_ids(stub: BidderStub) -> dict[int, set[str]]:
    """The `webhook-id`s each auction's deliveries carried."""
    ids: dict[int, set[str]] = defaultdict(set)
    for request in stub.received:
        ids[int(orjson.loads(request.body)["click_request"]["auction_id_64"])].add(request.webhook_id)
    return ids


async def kill_edge(edge: Service, events: list[tuple[str, float]]) -> None:
    edge.signal(signal.SIGKILL)
    await asyncio.to_thread(edge.wait)
    events.append(("edge2 killed", time.monotonic()))
    await asyncio.sleep(DOWN_S)
    await asyncio.to_thread(edge.start)
    events.append(("edge2 back", time.monotonic()))


def joined(stack: Stack, starts: int) -> bool:
    """Whether the standalone notifier's `starts`-th start has joined the group; it must not have exited."""
    log = stack.notifier.stderr_path.read_text()
    assert stack.notifier.process is not None and stack.notifier.process.poll() is None, (
        f"notifier exited: {log[-2000:]}"
    )
    return log.count(JOINED) >= starts


async def kill_notifier(stack: Stack, starts: int, events: list[tuple[str, float]]) -> None:
    """SIGKILL the standalone notifier once its `starts`-th start has joined the group, then restart it."""
    await eventually(lambda: joined(stack, starts), timeout_s=30.0)
    stack.notifier.kill()
    events.append(("notifier killed", time.monotonic()))
    await asyncio.sleep(DOWN_S)
    stack.notifier.start()
    events.append(("notifier back", time.monotonic()))


async def judged(stack: Stack, click_ids: set[str], timeout_s: float) -> None:
    """Wait until every click in `click_ids` was delivered or judged duplicate (or `timeout_s`)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        delivered, duplicate = await verdicts(stack)
        if click_ids <= delivered | duplicate:
            return
        await asyncio.sleep(0.5)


def left_in_spool(edge: Service) -> int:
    """Records the edge's latest stop left in its spool ("shipped at next start")."""
    found = SPOOL_LEFT.search(edge.logs().rsplit(STOPPING, 1)[-1])
    return int(found.group(1)) if found else 0


def ship_spool(edge: Service) -> int:
    """Start a stopped edge again, without its notifier, if its stop left records in its spool; how many."""
    left = left_in_spool(edge)
    if left:
        edge.notifier = False
        edge.start()  # ready once the spool shipped
        assert edge.stop() == 0, edge.logs()[-2000:]
    return left


def straddling(pairs: DuplicatePairs, caught: frozenset[int], events: list[tuple[str, float]]) -> int:
    """Pairs caught whose two clicks lie on either side of a kill or restart."""
    kills = [at for _, at in events[1:]]
    return sum(1 for a in caught if any(pairs.clicked[a][0] < at < pairs.clicked[a][1] for at in kills))


async def run(directory: Path, params: Params) -> Figures:
    broker = TansuBroker().start()
    stub = BidderStub(delay_s=BIDDER_DELAY_S)
    await stub.start()
    stack = Stack(
        directory,
        {13: stub.url},
        broker=broker,
        member_settings={"timeout_s": BIDDER_TIMEOUT_S},
        notifier_settings={"breaker_cooldown_s": BREAKER_COOLDOWN_S},
        edges=2,
        edge_notifier=True,
    )
    events: list[tuple[str, float]] = []
    try:
        for edge in stack.edges:
            await asyncio.to_thread(edge.start)
        stack.notifier.start()
        rate = params.rate_per_s / len(stack.edges)
        loads = [await ClickLoad(e.url, stack.keyring, (13,), rate_per_s=rate).start() for e in stack.edges]
        bases = tuple(edge.url for edge in stack.edges)
        pairs = await DuplicatePairs(loads[0], bases, PAIRS_PER_S, PAIR_GAP_S).start()
        events.append(("load started", time.monotonic()))
        for n in range(params.scaleout_rounds):
            await asyncio.sleep(params.scaleout_phase_s)
            await kill_edge(stack.edges[1], events)
            await asyncio.sleep(params.scaleout_phase_s)
            await kill_notifier(stack, n + 1, events)
        await asyncio.sleep(params.scaleout_phase_s)
        await pairs.stop()
        for load in loads:
            await load.stop()
        figures = await account(stack, stub, loads, pairs, events, params)
    finally:
        stack.stop()
        await stub.stop()
        broker.stop()
    return figures


async def account(
    stack: Stack,
    stub: BidderStub,
    loads: list[ClickLoad],
    pairs: DuplicatePairs,
    events: list[tuple[str, float]],
    params: Params,
) -> Figures:
    """Stop the edges once their spools shipped, wait for the standalone notifier to settle everything, and count."""
    drained = [await wait_ready(edge.url, params.settle_s) for edge in stack.edges]
    # their notifiers leave the group (the standalone one takes every partition), delivering meanwhile to the
    # stub, which answers in this loop: stop them in a thread
    await asyncio.to_thread(stack.stop_edge)
    stranded = [await asyncio.to_thread(ship_spool, edge) for edge in stack.edges]
    records = await stack.records()
    singles = [r for r in records if int(r["auction_id_64"]) < FIRST_PAIR_AUCTION]
    doubles = [r for r in records if int(r["auction_id_64"]) >= FIRST_PAIR_AUCTION]
    took = await settle(stack, [stub], singles, params.settle_s)
    await judged(stack, {str(r["click_id"]) for r in doubles}, params.settle_s)
    _, duplicate = await verdicts(stack)  # before its stop, which may leave its last outcomes in its spool
    await asyncio.to_thread(stack.stop_notifier)
    statuses = {auction: status for load in loads for auction, status in load.statuses.items()}
    ok = {webhook_id for webhook_id, answer in deliveries([stub]) if answer == "200"}
    judgement = judge_pairs(pairs.statuses, doubles, ok, duplicate)
    copies = Counter(str(r["click_id"]) for r in singles)  # a record sent twice is rightly judged duplicate once
    false_duplicates = {click_id for click_id, n in copies.items() if n == 1} & duplicate
    two_ids = sorted(auction for auction, ids in webhook_ids(stub).items() if len(ids) > 1)
    figures = tally(
        "scaleout",
        statuses,
        singles,
        deliveries([stub]),
        await stack.dead_letters(),
        notes=[
            f"Kafka (Tansu, {stack.config.log.kafka.partitions} partitions): 2 edges (clickbus run, in-process "
            "notifier) + 1 clickbus notifier, one group; clicks split over both edges",
            f"{params.scaleout_rounds} round(s): edge2 SIGKILLed, restarted; the standalone notifier SIGKILLed "
            f"once in the group, restarted; each down {DOWN_S} s; the load never pauses",
            f"true duplicates: {PAIRS_PER_S:.0f} tokens/s, each clicked on one edge, then {PAIR_GAP_S} s later "
            "on the other (counted apart from sent..dup_del, their losses in lost)",
            "an edge whose stop left records in its spool (its notifier's outcomes and parked retries, when Kafka "
            "was slow) is started again without its notifier to ship them, as documented",
        ],
        events=[f"{label} at {at - events[0][1]:.1f} s" for label, at in events[1:]],
        unanswered_while_down=sum(1 for s in statuses.values() if s != 302),
        true_duplicates=_pairs_line(judgement, straddling(pairs, judgement.caught, events)),
        false_duplicates=len(false_duplicates),
        left_in_edge_spools_at_stop=stranded,
        auctions_under_two_webhook_ids=len(two_ids),
        spools_drained_in_s=drained,
        settled_in_s=took,
        exit_codes=stack.exit_codes,
        failures=_failures(judgement, false_duplicates, two_ids),
    )
    return dataclasses.replace(
        figures,
        lost_records=figures.lost_records + judgement.lost_records,
        lost_deliveries=figures.lost_deliveries + judgement.lost_deliveries,
    )


def _pairs_line(judgement: Pairs, across: int) -> str:
    return (
        f"{judgement.sent} pairs sent, {judgement.answered_twice} answered 302 twice, {len(judgement.caught)} "
        f"caught (one delivered, one judged duplicate; {across} across a kill or restart), "
        f"{len(judgement.delivered_twice)} delivered twice"
    )


def _failures(judgement: Pairs, false_duplicates: set[str], two_ids: list[int]) -> list[str]:
    failures = []
    if judgement.delivered_twice:
        failures.append(f"true duplicates delivered twice (auction ids): {list(judgement.delivered_twice[:10])}")
    if len(judgement.caught) < judgement.answered_twice:
        failures.append(f"only {len(judgement.caught)} of {judgement.answered_twice} pairs answered twice caught")
    if false_duplicates:
        failures.append(f"unique clicks judged duplicate: {sorted(false_duplicates)[:10]}")
    if two_ids:
        failures.append(f"auctions delivered under two webhook-ids: {two_ids[:10]}")
    return failures
