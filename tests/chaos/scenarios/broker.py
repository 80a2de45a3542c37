"""The Kafka broker SIGKILLed again and again under running click load, the last time for a long outage.

No pause around the kills: clicks are in flight when the broker dies, their
appends miss the budget and go to the edge's spool, which must ship them to
the new broker whatever aiokafka later says of the first sends. Tansu is
memory-only: the broker that comes back is a new, empty cluster, so each
broker's clicks topic is read while it lives (tests/log/kafka_follower.py).
A real broker comes back with its topics; a new Tansu has none, and records
sent to a topic it lacks are acknowledged and then lost once the topic is
created (tests/chaos/test_tansu_quirk.py), so clickbus reaches the brokers
through a gate (tests/support/kafka_gate.py) that is shut from the kill until
the scenario has created the topics on the new broker.

A click acknowledged by a broker and gone with it before it could be read is
the broker's loss: it is counted apart (`lost_with_broker`), not as lost. Only
a click answered between the last check before a kill (every click answered
so far has been read: the load runs on while the test waits for that) and the
end of that outage can be one, and only if the edge's spool does not still
hold it for shipping at the end of the outage (tests/chaos/spool_view.py):
such a click no broker took, so it must reach the next one, whichever outage
it was answered in. When its 302 came back says nothing: one the old broker
acknowledged just before the kill can reach the load after it.

No notifier runs here: a replaced broker has lost the consumer group's
offsets, which is the broker's loss too (delivery is proved by the other
scenarios).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
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
from tests.chaos.spool_view import spooled_auctions
from tests.chaos.stack import Stack
from tests.log.kafka_follower import Follower
from tests.support.kafka_broker import TansuBroker
from tests.support.kafka_gate import KafkaGate
from tests.support.ports import free_port
from tests.support.waiting import eventually, eventually_async

WARM_S = 2.0
AFTER_S = 3.0
SHORT_OUTAGE_S = 0.5  # every kill but the last
DIRECT_S = 1.0  # appends go straight to Kafka this long before the next kill
CATCH_UP_S = 10.0  # for the followers to read what was answered (a loaded machine can make them lag)
SETUP_CLIENT = "chaos-setup"  # the scenario's own Kafka client id: the one the shut gate lets through


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


def read_auctions(followers: list[Follower]) -> set[int]:
    """The auction ids of every click the followers have read so far."""
    return {int(orjson.loads(m.value)["auction_id_64"]) for f in followers for m in f.messages}


async def caught_up(followers: list[Follower], wanted: set[int]) -> None:
    """Wait (up to `CATCH_UP_S`) until the followers have read every click of `wanted`.

    What is still unread then is lost, and the accounting says so.
    """
    with contextlib.suppress(TimeoutError):
        await eventually(lambda: not wanted - read_auctions(followers), CATCH_UP_S)


async def run(directory: Path, params: Params) -> Figures:
    port = free_port()
    gate = KafkaGate(port, [SETUP_CLIENT]).start()
    broker = TansuBroker(port, advertised_port=gate.port).start()  # every client connects through the gate
    stack = Stack(directory, {}, broker=broker)
    setup = dataclasses.replace(stack.config.log.kafka, client_id=SETUP_CLIENT)
    name = f"{stack.topic_prefix}.{Topic.CLICKS}"
    followers = [Follower(broker.bootstrap, name).start()]
    spooled: set[int] = set()  # clicks the spool still held at the end of an outage: never excused
    excusable: set[int] = set()  # answered about a kill, not pending in the spool: a broker acknowledged it
    try:
        stack.edge.start()
        load = await ClickLoad(stack.edge.url, stack.keyring, (13,), rate_per_s=params.rate_per_s).start()
        await asyncio.sleep(WARM_S)
        during = ""
        for kill in range(1, params.edge_kills + 1):
            last = kill == params.edge_kills
            checked = load.answered()  # each read by now, but those a broker killed before took with it
            await caught_up(followers, checked - excusable)  # the load runs on meanwhile
            broker.stop()  # SIGKILL under load
            gate.shut()  # no broker for clickbus until the next one has its topics
            await followers[-1].stop()
            outage = params.broker_outage_s if last else SHORT_OUTAGE_S
            await asyncio.sleep(min(2.0, outage / 2))
            during = during or await asyncio.to_thread(readiness, stack.edge.admin_url)  # the reason: internal only
            await asyncio.sleep(outage - min(2.0, outage / 2))
            looked = load.answered()  # first: each of these that the spool answered is fsync'd there by now
            in_spool = await asyncio.to_thread(spooled_auctions, stack.config)  # no broker: nothing shipped yet
            spooled |= in_spool
            excusable |= looked - checked - in_spool  # acknowledged by the broker killed (the 302 maybe after)
            broker.start()  # a new, empty broker on the same port, which only the setup client reaches
            await ensure_topics(setup, [f"{stack.topic_prefix}.{t}" for t in Topic], 5.0)
            gate.open()  # the broker is back with its topics, as a real one would be
            followers.append(Follower(broker.bootstrap, name).start())
            if not last:
                await wait_ready(stack.edge.url, params.settle_s)
                await asyncio.sleep(DIRECT_S)
        answered_in_outage = len(load.answered())
        await asyncio.sleep(AFTER_S)
        await load.stop()
        drained = await wait_ready(stack.edge.url, params.settle_s)
        stack.stop_edge()
        await caught_up(followers, load.answered() - excusable)
        records = [orjson.loads(m.value) for f in followers for m in await f.stop()]
        read = {int(r["auction_id_64"]) for r in records}
        with_broker = excusable - read
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
                "excused: answered between the last read before a kill and the outage's end, not pending in the spool",
            ],
            readyz_during_outage=during,
            read_per_broker=[len(f.messages) for f in followers],
            spooled_in_outages=len(spooled & load.answered()),
            lost_with_broker=len(with_broker),
            answered_by_end_of_outage=answered_in_outage,
            spool_drained_in_s=drained,
            exit_codes=stack.exit_codes,
            failures=[] if spooled else ["no click was spooled: the kills did not happen under load"],
        )
    finally:
        for follower in followers:
            await follower.stop()
        stack.stop()
        broker.stop()
        gate.close()
    return figures
