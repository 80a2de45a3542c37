"""The Kafka broker SIGKILLed again and again under running click load, the last time for a long outage.

No pause around the kills: clicks are in flight when the broker dies, their
appends miss the budget and go to the edge's spool, which must ship them to
the new broker whatever aiokafka later says of the first sends. Tansu is
memory-only: the broker that comes back is a new, empty cluster, so each
broker's clicks topic is read while it lives (tests/log/kafka_follower.py),
and the topics are created on it as soon as it listens (see
tests/log/test_kafka_kills.py for why). A click answered while the old broker
still lived, acknowledged by it and gone with it before it could be read, is
the broker's loss: it is counted apart (`lost_with_broker`), not as lost.
No notifier runs here: a replaced broker has lost the consumer group's
offsets, which is the broker's loss too (delivery is proved by the other
scenarios).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson

from clickbus.log.kafka_client import ensure_topics
from clickbus.log.port import Topic
from tests.chaos.accounting import Figures, tally
from tests.chaos.load import ClickLoad
from tests.chaos.params import Params
from tests.chaos.stack import Stack
from tests.log.kafka_follower import Follower
from tests.support.kafka_broker import TansuBroker
from tests.support.waiting import eventually_async

WARM_S = 2.0
AFTER_S = 3.0
SHORT_OUTAGE_S = 0.5  # every kill but the last
DIRECT_S = 1.0  # appends go straight to Kafka this long before the next kill
FOLLOW_S = 1.0  # for the last follower to read what the spool shipped


def readiness(url: str) -> str:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=2) as response:
            return f"{response.status}"
    except urllib.error.HTTPError as error:
        return f"{error.code} {orjson.loads(error.read()).get('reason', '')}"
    except OSError as error:
        return f"unreachable ({error})"


async def _is_ready(url: str) -> bool:
    return await asyncio.to_thread(readiness, url) == "200"


async def wait_ready(url: str, timeout_s: float) -> float:
    """Seconds until /readyz answers 200 (the spool has shipped), or `timeout_s`."""
    started = time.monotonic()
    with contextlib.suppress(TimeoutError):
        await eventually_async(lambda: _is_ready(url), timeout_s)
    return round(time.monotonic() - started, 1)


async def run(directory: Path, params: Params) -> Figures:
    broker = TansuBroker().start()
    stack = Stack(directory, {}, broker=broker)
    name = f"{stack.topic_prefix}.{Topic.CLICKS}"
    followers = [Follower(broker.bootstrap, name).start()]
    before_kills: set[int] = set()
    try:
        stack.edge.start()
        load = await ClickLoad(stack.edge.url, stack.keyring, (13,), rate_per_s=params.rate_per_s).start()
        await asyncio.sleep(WARM_S)
        during = ""
        for kill in range(1, params.edge_kills + 1):
            last = kill == params.edge_kills
            before_kills |= load.answered()  # answered while this broker lived: from its acks, or from the spool
            broker.stop()  # SIGKILL under load
            await followers[-1].stop()
            outage = params.broker_outage_s if last else SHORT_OUTAGE_S
            await asyncio.sleep(min(2.0, outage / 2))
            during = during or await asyncio.to_thread(readiness, stack.edge.admin_url)  # the reason: internal only
            await asyncio.sleep(outage - min(2.0, outage / 2))
            broker.start()  # a new, empty broker on the same port
            await ensure_topics(stack.config.log.kafka, [f"{stack.topic_prefix}.{t}" for t in Topic], 5.0)
            followers.append(Follower(broker.bootstrap, name).start())
            if not last:
                await wait_ready(stack.edge.url, params.settle_s)
                await asyncio.sleep(DIRECT_S)
        answered_in_outage = len(load.answered())
        await asyncio.sleep(AFTER_S)
        await load.stop()
        drained = await wait_ready(stack.edge.url, params.settle_s)
        stack.stop_edge()
        await asyncio.sleep(FOLLOW_S)
        records = [orjson.loads(m.value) for f in followers for m in await f.stop()]
        read = {int(r["auction_id_64"]) for r in records}
        with_broker = (before_kills & load.answered()) - read
        statuses = {a: s for a, s in load.statuses.items() if a not in with_broker}
        figures = tally(
            "broker",
            statuses,
            records,
            None,
            None,
            notes=[
                f"Kafka backend (Tansu), broker SIGKILLed {params.edge_kills} times under running load "
                f"(no pause), the last time for {params.broker_outage_s} s; a new empty broker each time",
                "each broker's topic read while it lived; clicks it acknowledged and took with it are lost_with_broker",
            ],
            readyz_during_outage=during,
            read_per_broker=[len(f.messages) for f in followers],
            lost_with_broker=len(with_broker),
            answered_by_end_of_outage=answered_in_outage,
            spool_drained_in_s=drained,
            exit_codes=stack.exit_codes,
        )
    finally:
        for follower in followers:
            await follower.stop()
        stack.stop()
        broker.stop()
    return figures
