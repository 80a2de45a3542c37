"""The Kafka adapter of the log port: an aiokafka producer with a disk spool behind it.

An append goes to Kafka and is answered when Kafka acknowledges it (acks from
all in-sync replicas). If that takes longer than `append_budget_ms`, or the
send fails, the adapter falls back: the record is fsync'd to the local spool
and the append is answered from there. From then on every append goes to the
spool, so nothing overtakes what is already waiting, until a background
shipper has moved the whole spool to Kafka, in order; then appends go straight
to Kafka again. While the spool is in use, `health` is not ready and says why.

A record whose send timed out may still be delivered by aiokafka later. Its
delivery future is kept: if it succeeds, the spooled copy is marked done and
never shipped; the shipper waits for it before deciding. A copy is sent twice
only when Kafka wrote a record whose acknowledgement was lost (or the edge
restarted meanwhile); records carry their click_id, so such duplicates are
recognisable downstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from aiokafka.errors import KafkaError, KafkaTimeoutError  # type: ignore[import-untyped]

from clickbus.compat.aiokafka import sender_died
from clickbus.config import KafkaConfig
from clickbus.errors import LogUnavailable
from clickbus.log.budget import Budget, BudgetExpired
from clickbus.log.kafka_client import ensure_topics, new_producer, start_bounded, stop_producer
from clickbus.log.kafka_consumer import KafkaGroupConsumer, TopicNames, read_topic
from clickbus.log.port import AssignCallback, Entry, Headers, Health, Topic
from clickbus.log.spool import Spool
from clickbus.log.spool_format import SpooledRecord

logger = logging.getLogger(__name__)

HeaderTuple = tuple[tuple[str, bytes], ...]

SHIP_WINDOW = 2000
BACKOFF_MAX_S = 5.0
STOP_GRACE_S = 1.0  # how long a producer that cannot reach Kafka may try to flush at stop


class KafkaLog:
    """The log port on Apache Kafka (or any Kafka-protocol broker)."""

    def __init__(
        self, config: KafkaConfig, *, spool_dir: Path, prefix: str = "clickbus", topics: Sequence[str] = tuple(Topic)
    ) -> None:
        self.config = config
        self.names = TopicNames(prefix)
        self.topics = tuple(topics)
        self.spool = Spool(spool_dir, max_bytes=config.spool_max_mb * 1024 * 1024)
        self._budget = Budget(config.append_budget_ms / 1000)
        self._full = {topic: self.names.full(topic) for topic in self.topics}
        self._connect_s = config.connect_timeout_ms / 1000
        self._producer: Any = None
        self._direct = False  # appends go to Kafka (True) or to the spool (False)
        self._inflight: dict[int, asyncio.Future[Any]] = {}  # spool seq -> a delivery still possible
        self._delivered: list[int] = []  # spool seqs that reached Kafka by their first send after all
        self._wake = asyncio.Event()
        self._direct_appends = 0  # appends waiting on Kafka right now
        self._direct_idle = asyncio.Event()
        self._direct_idle.set()
        self._shipper: asyncio.Task[None] | None = None
        self._reason = "kafka log not started"
        self._stopping = False
        self._oldest_ms: int | None = None  # timestamp of the oldest spooled record (about), while one is

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the spool, connect (or note why not), and start the shipper."""
        await self.spool.open()
        try:
            await self._connect()
        except KafkaError as exc:
            self._reason = f"kafka unreachable at start: {exc}"
            logger.warning("%s; spooling to %s", self._reason, self.spool.directory)
        if self.spool.pending:
            oldest, _ = await self.spool.read(self.spool.start_cursor(), 1)
            self._oldest_ms = oldest[0].timestamp_ms if oldest else time.time_ns() // 1_000_000
        self._direct = self._producer is not None and self.spool.pending == 0
        if not self._direct and self.spool.pending:
            self._reason = f"shipping {self.spool.pending} spooled records to kafka"
        self._shipper = asyncio.create_task(self._ship_forever(), name="clickbus-kafka-shipper")

    async def _connect(self) -> None:
        names = [self.names.full(t) for t in self.topics]
        await ensure_topics(self.config, names, self._connect_s)
        if self._producer is None:
            producer = new_producer(self.config)
            await start_bounded(producer, self._connect_s)
            self._producer = producer

    async def stop(self, timeout: float) -> None:
        """Stop within `timeout` seconds; what Kafka has not acknowledged stays in the spool."""
        deadline = time.monotonic() + timeout
        self._stopping = True
        if self._shipper is not None:
            self._shipper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._shipper
        producer, self._producer = self._producer, None
        if producer is not None:
            grace = deadline - time.monotonic()
            await stop_producer(producer, max(0.1, grace if self._direct else min(grace, STOP_GRACE_S)))
        await self._persist_delivered()
        await self.spool.close()
        self._budget.close()
        if self.spool.pending:
            logger.warning("kafka log stopped with %d records in the spool; shipped at next start", self.spool.pending)

    @property
    def health(self) -> Health:
        if self._stopping:
            return Health(False, "kafka log is stopping")
        if self.spool.broken is not None:
            return Health(False, f"spool unusable: {self.spool.broken}")
        if self._direct:
            return Health(True)
        return Health(False, f"{self._reason}; spooling to disk ({self.spool.pending} records pending)")

    def spool_status(self) -> tuple[int, float]:
        """Records in the spool, and the age in seconds of the oldest one (0 when empty)."""
        pending = self.spool.pending
        if not pending or self._oldest_ms is None:
            return pending, 0.0
        return pending, max(0.0, time.time() - self._oldest_ms / 1000)

    # -- appending -------------------------------------------------------------------------

    async def append(self, topic: str, key: bytes, value: bytes, headers: Headers = ()) -> None:
        """Answer once Kafka acknowledged the record, or once it is fsync'd to the spool."""
        if self._stopping:
            raise LogUnavailable("kafka log is stopping")
        record = (topic, key, value, tuple(headers), time.time_ns() // 1_000_000)
        while not self._direct:
            if not self._direct_appends:
                self._note_spooled(record[-1])
                await self.spool.put(*record)
                return
            await self._direct_idle.wait()  # sends begun before the fall-back go first: nothing overtakes them
        await self._append_direct(*record)

    async def _append_direct(self, topic: str, key: bytes, value: bytes, headers: HeaderTuple, ts: int) -> None:
        self._direct_appends += 1
        self._direct_idle.clear()
        future = None
        try:
            try:
                wait = self._budget.start()
                future = await wait.sent(
                    self._producer.send(self._name(topic), value, key=key, headers=list(headers), timestamp_ms=ts)
                )
                if await wait.acknowledged(future):
                    return
                self._fall_back(f"kafka did not acknowledge within {self.config.append_budget_ms} ms")
            except BudgetExpired:
                self._fall_back(f"kafka did not take the record within {self.config.append_budget_ms} ms")
            except KafkaError as exc:
                self._fall_back(f"kafka send failed: {exc!r}")
            if future is not None and _succeeded(future):
                return
            seq, written = self.spool.enqueue(topic, key, value, headers, ts)
            self._note_spooled(ts)
            if future is not None:
                self._track(seq, future)
        finally:
            self._direct_appends -= 1
            if not self._direct_appends:
                self._direct_idle.set()
        await written

    def _note_spooled(self, ts: int) -> None:
        if self._oldest_ms is None or not self.spool.pending:
            self._oldest_ms = ts

    def _name(self, topic: str) -> str:
        """The Kafka name of `topic`; a topic first seen here is created by the shipper if Kafka lacks it."""
        name = self._full.get(topic)
        if name is None:
            name = self._full[topic] = self.names.full(topic)
            self.topics += (topic,)
        return name

    def _fall_back(self, reason: str) -> None:
        if self._direct:
            logger.warning("%s: spooling appends to %s", reason, self.spool.directory)
            self._direct = False
            self._reason = reason
        self._wake.set()

    def _track(self, seq: int, future: asyncio.Future[Any]) -> None:
        """Remember a send that may still succeed, so its spooled copy is not shipped twice."""
        self._inflight[seq] = future
        future.add_done_callback(functools.partial(self._on_delivery, seq))

    def _on_delivery(self, seq: int, future: asyncio.Future[Any]) -> None:
        if self._inflight.get(seq) is future:
            del self._inflight[seq]
        if _succeeded(future):
            self._delivered.append(seq)

    async def _persist_delivered(self) -> None:
        delivered, self._delivered = self._delivered, []
        await self.spool.mark_done(delivered)

    # -- shipping the spool ----------------------------------------------------------------

    async def _ship_forever(self) -> None:
        backoff = self.config.retry_backoff_ms / 1000
        while True:
            if self._direct:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                await self._ship()
                backoff = self.config.retry_backoff_ms / 1000
                continue
            except (KafkaError, LogUnavailable, OSError, TimeoutError) as exc:
                self._reason = f"kafka unavailable: {exc}"
                logger.info("spool shipping paused (%s); retrying in %.1fs", self._reason, backoff)
                await self._recycle_if_broken(exc)
            except Exception:  # a bug must not end shipping for good: say so, and try again
                self._reason = "spool shipping failed unexpectedly (see the log)"
                logger.exception("spool shipping failed; retrying in %.1fs", backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _ship(self) -> None:
        """Ship every pending record in seq order; return once appends go to Kafka again."""
        await self._connect()
        cursor, window = self.spool.start_cursor(), 1  # probe with one record, then open the window
        while True:
            await self._persist_delivered()
            batch, after = await self.spool.read(cursor, window)
            if batch:
                self._oldest_ms = batch[0].timestamp_ms  # what is left is this batch and newer
                await self._ship_batch(batch)
                cursor, window = after, SHIP_WINDOW
            elif self.spool.pending == 0:
                self._direct = True  # nothing waits and nothing is being written: hand appends back
                await self.spool.reset()
                self._oldest_ms = None
                logger.info("spool shipped; appending to kafka again")
                return
            else:
                cursor = after
                await self._wait_for_more()

    async def _wait_for_more(self) -> None:
        """Pending records are still being written: let them reach the disk."""
        await asyncio.sleep(0.005)

    async def _ship_batch(self, batch: list[SpooledRecord]) -> None:
        timeout = self.config.request_timeout_ms / 1000
        sends = []
        async with asyncio.timeout(timeout):
            for record in batch:
                if not self.spool.is_done(record.seq):
                    sends.append((record.seq, await self._send_once(record)))
        if sends:
            await asyncio.wait([f for _, f in sends], timeout=timeout)
        for _, future in sends:
            if not _succeeded(future):
                await self._persist_delivered()
                raise _failure(future)
        await self._persist_delivered()
        await self.spool.mark_shipped(batch[-1].seq)
        self._reason = f"shipping spooled records to kafka ({self.spool.pending} left)"

    async def _send_once(self, record: SpooledRecord) -> asyncio.Future[Any]:
        """The record's delivery: the one still in flight if there is one, else a new send."""
        future = self._inflight.get(record.seq)
        if future is None:
            future = await self._producer.send(
                self.names.full(record.topic),
                record.value,
                key=record.key,
                headers=list(record.headers),
                timestamp_ms=record.timestamp_ms,
            )
            self._track(record.seq, future)
        return future

    async def _recycle_if_broken(self, exc: BaseException) -> None:
        """Replace a producer that cannot recover by itself (dead sender, fatal error)."""
        producer = self._producer
        if producer is None:
            return
        fatal = isinstance(exc, KafkaError) and not exc.retriable and not isinstance(exc, KafkaTimeoutError)
        if sender_died(producer) or fatal:
            logger.warning("recreating the kafka producer after %r", exc)
            self._producer = None
            await stop_producer(producer, STOP_GRACE_S)

    # -- reading ---------------------------------------------------------------------------

    def read(self, topic: str, *, from_beginning: bool, follow: bool) -> AsyncIterator[Entry]:
        """Records of `topic` from every partition, without a group (for `clickbus tail`)."""
        return read_topic(self.config, self.names, topic, from_beginning=from_beginning, follow=follow)

    def consumer(
        self, topics: Sequence[str], group: str, *, on_assign: AssignCallback | None = None
    ) -> KafkaGroupConsumer:
        return KafkaGroupConsumer(self.config, self.names, topics, group, on_assign)


def _succeeded(future: asyncio.Future[Any]) -> bool:
    return future.done() and not future.cancelled() and future.exception() is None


def _failure(future: asyncio.Future[Any]) -> KafkaError:
    if not future.done():
        return KafkaTimeoutError("no acknowledgement from kafka")
    error = future.exception() if not future.cancelled() else None
    return error if isinstance(error, KafkaError) else KafkaError(repr(error))
