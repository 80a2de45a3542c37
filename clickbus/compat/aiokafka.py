"""aiokafka internals clickbus relies on. Checked against aiokafka 0.14.0.

- `AIOKafkaProducer._sender.sender_task`: a producer whose sender task has died never sends again and must
  be replaced; aiokafka exposes no health flag.
- `AIOKafkaProducer._message_accumulator.fail_all` and `._sender.close()`: `stop()` waits forever for batches
  that an unreachable broker never takes (aiokafka#1101), so they are failed and the sender closed instead;
  the accumulator's `_batches` and `_pending_batches` (each a `MessageBatch` with `future` and
  `_drain_waiter`), so that those failures are read.
- `._sender.sender_task.cancel()`: once the Kafka log has spooled what a producer holds, that producer must
  not retry it against the next broker that answers (a new, empty one); aiokafka has no "stop sending now".
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from aiokafka.errors import KafkaError  # type: ignore[import-untyped]

CHECKED_VERSION = "0.14.0"


def sender_died(producer: Any) -> bool:
    """Whether the producer's background sender has ended (it then never sends again)."""
    task = producer._sender.sender_task
    return task is not None and bool(task.done())


async def abandon_pending(producer: Any, error: KafkaError, timeout: float) -> None:
    """Fail every batch the producer still holds with `error`, then stop its sender within `timeout`."""
    accumulator = producer._message_accumulator
    for batch in [*itertools.chain.from_iterable(accumulator._batches.values()), *accumulator._pending_batches]:
        # the halted sender never awaits a batch's drain waiter, and a dropped append never reads its future:
        # read their failure here, or asyncio logs each as an error ("exception was never retrieved")
        for future in (batch.future, batch._drain_waiter):
            future.add_done_callback(_observe)
    accumulator.fail_all(error)
    await asyncio.wait_for(producer._sender.close(), timeout)


def _observe(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def halt_sender(producer: Any) -> None:
    """Stop the producer sending or retrying anything from now on (stop it later to close its connections)."""
    task = producer._sender.sender_task
    if task is not None:
        task.cancel()
