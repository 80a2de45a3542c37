"""A reader that follows one broker's topic from its start until the broker dies, keeping what it read.

Tansu is memory-only: a killed broker takes its records with it, and the one
started again on the same port is a new, empty cluster. A test that kills the
broker under running load therefore reads each broker's topic while it lives.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition  # type: ignore[import-untyped]
from aiokafka.errors import KafkaError  # type: ignore[import-untyped]

FETCH_WAIT_MS = 20
CLIENT_ID = "clickbus-test-follower"
STEP_TIMEOUT_S = 2.0
START_TIMEOUT_S = 0.5  # a start that hangs on a broker just started is tried again, quickly


class Follower:
    """Reads every partition of `name` on `bootstrap` from the beginning, until `stop()`."""

    def __init__(self, bootstrap: str, name: str) -> None:
        self.bootstrap = bootstrap
        self.name = name
        self.messages: list[Any] = []
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> Follower:
        self._task = asyncio.create_task(self._run(), name=f"follow-{self.name}")
        return self

    async def stop(self) -> list[Any]:
        """Stop reading (the broker is gone or the test is over) and return what was read."""
        self._stopping = True  # asyncio.wait_for in 3.11 can swallow a cancellation: the loop checks this too
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        return self.messages

    async def _run(self) -> None:
        while not self._stopping:  # a consumer that stalls (a broker just started can refuse a request) is replaced
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap,
                client_id=CLIENT_ID,
                enable_auto_commit=False,
                fetch_max_wait_ms=FETCH_WAIT_MS,
                request_timeout_ms=2000,
                retry_backoff_ms=20,
            )
            try:
                await asyncio.wait_for(consumer.start(), START_TIMEOUT_S)
                await self._follow(consumer)
            except (KafkaError, TimeoutError, AssertionError):  # aiokafka asserts on an assignment it dropped
                await asyncio.sleep(0.05)
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(consumer.stop(), 1.0)

    async def _follow(self, consumer: Any) -> None:
        partitions: set[Any] = set()
        while not self._stopping:
            found = await asyncio.wait_for(_partitions(consumer, self.name), STEP_TIMEOUT_S)
            partitions |= {TopicPartition(self.name, p) for p in found}
            if set(consumer.assignment()) != partitions:  # new partitions, or aiokafka dropped the assignment
                consumer.assign(list(partitions))
                await asyncio.wait_for(consumer.seek_to_beginning(*partitions), STEP_TIMEOUT_S)
            if not consumer.assignment():
                await asyncio.sleep(0.02)
                continue
            batches = await asyncio.wait_for(consumer.getmany(timeout_ms=FETCH_WAIT_MS * 5), STEP_TIMEOUT_S)
            for messages in batches.values():
                self.messages += messages  # read again from the start after a replacement: callers count a set


async def _partitions(consumer: Any, name: str) -> set[int]:
    """The topic's partitions now (none while it does not exist); asking never creates the topic."""
    try:
        cluster = await consumer._client.fetch_all_metadata()  # the public topics() keeps no partitions
    except KafkaError:
        return set()
    return set(cluster.partitions_for_topic(name) or ())
