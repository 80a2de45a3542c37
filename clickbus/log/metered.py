"""A log that counts and times every append of the log it wraps, whichever adapter that is."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Protocol, runtime_checkable

from clickbus.log.port import AssignCallback, Consumer, Entry, Headers, Health, Log
from clickbus.metrics import Metrics


@runtime_checkable
class Spooling(Protocol):
    """A log with a local spool (the Kafka adapter)."""

    def spool_status(self) -> tuple[int, float]:
        """Records in the spool and the age in seconds of the oldest one."""
        ...


class MeteredLog:
    """The log port around another log: `clickbus_log_appends_total` and `clickbus_log_append_seconds`."""

    def __init__(self, inner: Log, metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics

    async def start(self) -> None:
        await self.inner.start()

    def report(self) -> None:
        """Set the spool gauges from the wrapped log (called once a second; logs without a spool leave them 0)."""
        if isinstance(self.inner, Spooling):
            self.metrics.spool(*self.inner.spool_status())

    async def stop(self, timeout: float) -> None:
        await self.inner.stop(timeout)

    @property
    def health(self) -> Health:
        return self.inner.health

    async def append(self, topic: str, key: bytes, value: bytes, headers: Headers = ()) -> None:
        started = time.perf_counter()
        try:
            await self.inner.append(topic, key, value, headers)
        except Exception:
            self.metrics.log_append(topic, time.perf_counter() - started, ok=False)
            raise
        self.metrics.log_append(topic, time.perf_counter() - started, ok=True)

    async def append_many(self, topic: str, records: Sequence[tuple[bytes, bytes]]) -> list[BaseException | None]:
        """`records` appended together where the wrapped log can (`EmbeddedLog.append_many`), else one by one."""
        started = time.perf_counter()
        many = getattr(self.inner, "append_many", None)
        if many is not None:
            results: list[BaseException | None] = await many(topic, records)
        else:
            results = await asyncio.gather(
                *(self.inner.append(topic, key, value) for key, value in records), return_exceptions=True
            )
        took = time.perf_counter() - started
        for result in results:
            self.metrics.log_append(topic, took, ok=result is None)
        return results

    def read(self, topic: str, *, from_beginning: bool, follow: bool) -> AsyncIterator[Entry]:
        return self.inner.read(topic, from_beginning=from_beginning, follow=follow)

    def consumer(self, topics: Sequence[str], group: str, *, on_assign: AssignCallback | None = None) -> Consumer:
        return self.inner.consumer(topics, group, on_assign=on_assign)
