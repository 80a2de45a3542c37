"""The Kafka broker killed for a long outage under steady click load, then started again.

Tansu is memory-only: the broker that comes back is a new, empty cluster. So
the load pauses for a moment before the kill while everything the old broker
acknowledged is read back; the kill and the whole outage then happen under
load, and the edge spools to disk until the new broker takes the backlog.
No notifier runs here: the replaced broker has lost the consumer group's
offsets, which is the broker's loss, not clickbus's (delivery is proved by
the other scenarios).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson

from tests.chaos.accounting import Figures, tally
from tests.chaos.load import ClickLoad
from tests.chaos.params import Params
from tests.chaos.stack import Stack
from tests.support.kafka_broker import TansuBroker
from tests.support.waiting import eventually_async

WARM_S = 2.0
AFTER_S = 3.0


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
    try:
        stack.edge.start()
        load = await ClickLoad(stack.edge.url, stack.keyring, (13,), rate_per_s=params.rate_per_s).start()
        await asyncio.sleep(WARM_S)
        await load.pause()
        acknowledged = await stack.records()  # what the old broker holds; it dies with it
        broker.stop()
        load.resume()
        await asyncio.sleep(min(2.0, params.broker_outage_s / 2))
        during = await asyncio.to_thread(readiness, stack.edge.url)
        await asyncio.sleep(params.broker_outage_s - min(2.0, params.broker_outage_s / 2))
        answered_in_outage = len(load.answered())
        broker.start()  # a new, empty broker on the same port
        await asyncio.sleep(AFTER_S)
        await load.stop()
        drained = await wait_ready(stack.edge.url, params.settle_s)
        stack.stop_edge()
        shipped = await stack.records()
        stack.stop_notifier()
        figures = tally(
            "broker",
            load.statuses,
            acknowledged + shipped,
            None,
            None,
            notes=[
                f"Kafka backend (Tansu), broker SIGKILLed for {params.broker_outage_s} s under load, "
                "then a new one started",
                "Tansu is memory-only: the old broker's records were read before the kill (load paused for that read)",
            ],
            readyz_during_outage=during,
            read_from_old_broker=len(acknowledged),
            read_from_new_broker=len(shipped),
            answered_by_end_of_outage=answered_in_outage,
            spool_drained_in_s=drained,
            exit_codes=stack.exit_codes,
        )
    finally:
        stack.stop()
        broker.stop()
    return figures
