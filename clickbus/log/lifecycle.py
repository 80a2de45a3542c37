"""A log's life in a process: started for a block and stopped within a limit, its metrics flushed meanwhile.

The composition root (`clickbus.runtime`) and the edge's cleanup contexts both use these; they live beside
the log so that the edge needs nothing from the root.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from clickbus import tasks
from clickbus.log.metered import MeteredLog
from clickbus.log.port import Log
from clickbus.metrics import FLUSH_EVERY_S, Metrics


@contextlib.asynccontextmanager
async def started(log: Log, stop_timeout_s: float) -> AsyncIterator[Log]:
    """`log` started for the block, and stopped within `stop_timeout_s` after it, however it ends."""
    await log.start()
    try:
        yield log
    finally:
        await log.stop(stop_timeout_s)


@contextlib.asynccontextmanager
async def flushing(metrics: Metrics, log: Log) -> AsyncIterator[None]:
    """Write the metrics summed in this process every second, idle or not, and once more at the end."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY_S)
            if isinstance(log, MeteredLog):
                log.report()
            metrics.log_ready(log.health.ready)
            metrics.flush()

    task = tasks.supervise("metrics-flush", loop, metrics=metrics)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        metrics.flush()
