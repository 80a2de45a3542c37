"""The Kafka adapter of the log port: an aiokafka producer with a disk spool behind it.

Appends join the open batch of their partition (`kafka_batch`), which takes
records until the partition's previous batch is settled and `linger_ms` has
passed, and then goes to the producer; each append is answered when its
batch is acknowledged (acks from all in-sync replicas). If that takes longer than
`append_budget_ms`, or the send fails, the adapter falls back: the records
not yet acknowledged are fsync'd to the local spool and answered from there.
From then on every append goes to the spool, so nothing overtakes what is
already waiting, until a background shipper has moved the whole spool to
Kafka, in order; then appends go straight to Kafka again. While the spool is
in use, `health` is not ready and says why.

Once a record is in the spool, the spooled copy is shipped whatever becomes
of its first send. aiokafka may still report that send successful later, but
the broker that took it may be gone by then with its records (a broker
replaced by an empty one, or one without replication): a copy in Kafka twice
is recognisable by its click_id, a copy dropped is a lost click.
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

from clickbus import tasks
from clickbus.compat.aiokafka import halt_sender, sender_died
from clickbus.config import KafkaConfig
from clickbus.errors import LogUnavailable
from clickbus.log.budget import Budget, BudgetExpired
from clickbus.log.kafka_batch import OpenBatch, OpenBatches, Outgoing, Sent, send_batches, succeeded
from clickbus.log.kafka_client import IdempotenceRefused, ensure_topics, start_producer, stop_producer
from clickbus.log.kafka_consumer import KafkaGroupConsumer, TopicNames, read_topic
from clickbus.log.port import AssignCallback, Entry, Headers, Health, Topic
from clickbus.log.rarely import Rarely
from clickbus.log.spool import Spool
from clickbus.log.spool_format import SpooledRecord

logger = logging.getLogger(__name__)

SHIP_WINDOW = 2000
BACKOFF_MAX_S = 5.0
STOP_GRACE_S = 1.0  # how long a producer that cannot reach Kafka may try to flush at stop
STOP_RESERVE_S = 2.0  # of a stop's time, kept for stopping the producer after shipping the spool
ABANDON_GRACE_S = 0.1  # how long an abandoned producer may flush before its sends are failed


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
        self._linger_s = config.linger_ms / 1000
        self._producer: Any = None
        self._direct = False  # appends go to Kafka (True) or to the spool (False)
        self._open: OpenBatches | None = None  # the batches direct appends join, of the current producer
        self._batches_out: set[OpenBatch] = set()  # batches of appends not yet settled
        self._wake = asyncio.Event()
        self._kick = asyncio.Event()  # ends the shipper's backoff now (a stop wants the spool shipped)
        self._ship_ended = asyncio.Event()  # a shipping attempt ended: the spool is shipped, or it failed
        self._direct_idle = asyncio.Event()
        self._direct_idle.set()
        self._shipper: asyncio.Task[None] | None = None
        self._reason = "kafka log not started"
        self._stopping = False
        self._refused = False  # the broker refused the idempotent producer (said once in the log)
        self._refusals = Rarely()  # ... and every refusal after that, said once per 10 minutes with a count
        self._abandon = False  # the producer of direct appends is to be dropped before shipping
        self._oldest_ms: int | None = None  # timestamp of the oldest spooled record (about), while one is

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the spool, connect (or note why not), and start the shipper."""
        await self.spool.open()
        try:
            await self._connect()
        except IdempotenceRefused as exc:
            self._reason = str(exc)  # _connect logged it
        except KafkaError as exc:
            self._reason = f"kafka unreachable at start: {exc}"
            logger.warning("%s; spooling to %s", self._reason, self.spool.directory)
        if self.spool.pending:
            oldest, _ = await self.spool.read(self.spool.start_cursor(), 1)
            self._oldest_ms = oldest[0].timestamp_ms if oldest else time.time_ns() // 1_000_000
        self._direct = self._producer is not None and self.spool.pending == 0
        if not self._direct and self.spool.pending:
            self._reason = f"shipping {self.spool.pending} spooled records to kafka"
        self._shipper = tasks.supervise("kafka-shipper", self._ship_forever)

    async def _connect(self) -> None:
        names = [self.names.full(t) for t in self.topics]
        await ensure_topics(self.config, names, self._connect_s)
        if self._producer is None:
            try:
                self._producer = await start_producer(self.config, self._connect_s)
            except IdempotenceRefused as exc:
                if not self._refused:  # one clear line, not one per retry
                    logger.error("%s; spooling to %s meanwhile", exc, self.spool.directory)
                    self._refusals.said()
                elif repeats := self._refusals.repeat():
                    minutes = self._refusals.every_s / 60
                    logger.error("%s (%d more refusals in %.0f minutes); spooling meanwhile", exc, repeats, minutes)
                self._refused = True
                raise

    async def stop(self, timeout: float) -> None:
        """Stop within `timeout` seconds; what Kafka has not acknowledged stays in the spool."""
        deadline = time.monotonic() + timeout
        self._stopping = True
        if self._batches_out:  # each is settled within the budget: acknowledged, or spooled
            await asyncio.wait([b.settled for b in self._batches_out], timeout=max(0.1, deadline - time.monotonic()))
        await self._ship_before_stop(deadline - min(STOP_RESERVE_S, timeout / 4))
        if self._shipper is not None:
            await _cancel_within(self._shipper, max(0.1, deadline - time.monotonic()))
        producer, self._producer = self._producer, None
        if producer is not None:
            grace = deadline - time.monotonic()
            await stop_producer(producer, max(0.1, grace if self._direct else min(grace, STOP_GRACE_S)))
        await self.spool.close()
        self._budget.close()
        if self.spool.pending:
            logger.warning("kafka log stopped with %d records in the spool; shipped at next start", self.spool.pending)

    async def _ship_before_stop(self, deadline: float) -> None:
        """Ship the spool now if Kafka takes it, rather than at the next start; give up at its first failure."""
        if not self.spool.pending or self._shipper is None or self._shipper.done():
            return
        self._ship_ended.clear()
        self._kick.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ship_ended.wait(), max(0.0, deadline - time.monotonic()))
        if not self.spool.pending:
            logger.info("kafka log shipped its spool before stopping")

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
        record = Outgoing(self._name(topic), key, value, tuple(headers), time.time_ns() // 1_000_000)
        joined = None
        while joined is None:
            while not self._direct:
                if not self._batches_out:
                    self._note_spooled(record.timestamp_ms)
                    await self.spool.put(topic, key, value, record.headers, record.timestamp_ms)
                    return
                await self._direct_idle.wait()  # sends begun before the fall-back go first: nothing overtakes them
            joined = self._join(topic, record) or await self._join_unknown(topic, record)
        batch, index, _ = joined
        settlement = await batch.settled
        if settlement is not None:
            spooled = settlement[index]
            if isinstance(spooled, BaseException):
                raise spooled
            await spooled

    def _join(self, topic: str, record: Outgoing) -> tuple[OpenBatch, int, bool] | None:
        """Add the record to its partition's open batch (opening one if need be); None while the partitions of
        its topic are unknown."""
        batches = self._open
        if batches is None or batches.producer is not self._producer:
            if self._producer is None:
                return None
            batches = self._open = OpenBatches(self._producer)
        joined = batches.join(topic, record)
        if joined is not None and joined[2]:  # a new batch: a task of its own sends it when its turn comes
            batch = joined[0]
            self._direct_idle.clear()
            self._batches_out.add(batch)
            batch.sending = asyncio.create_task(self._send(batch), name="clickbus-kafka-batch")
        return joined

    async def _join_unknown(self, topic: str, record: Outgoing) -> tuple[OpenBatch, int, bool] | None:
        """Learn the partitions of a topic not seen yet, within the budget; None if that failed (now spooling)."""
        batches = self._open
        if batches is None or batches.producer is not self._producer:  # it was dropped since (a stop)
            self._fall_back("kafka producer being replaced")
            return None
        try:
            async with asyncio.timeout(self._budget.seconds):
                await batches.learn(record.name)
        except (KafkaError, TimeoutError) as exc:
            self._fall_back(f"kafka did not give the partitions of {record.name} within the budget: {exc!r}")
            return None
        return self._join(topic, record) if self._direct else None

    async def _send(self, batch: OpenBatch) -> None:
        """Queue `batch` in the producer when its turn comes, within the budget, and have it settled when
        acknowledged or past the budget (by a callback: the appends wake as soon as Kafka answers)."""
        wait = self._budget.start()
        try:
            await wait.sent(batch.ready(self._linger_s))
            if batch.shut or not self._direct:  # a fall-back came first: the spool takes it, after the others
                self._settle(batch, self._reason or "kafka log fell back to the spool")
                return
            delivery = await wait.sent(batch.queue())
        except BudgetExpired:
            self._settle(batch, f"kafka did not take the records within {self.config.append_budget_ms} ms")
        except KafkaError as exc:
            self._settle(batch, f"kafka send failed: {exc!r}")
        except Exception as exc:  # a bug must not lose the batch: spool it, and say so
            logger.exception("kafka append failed unexpectedly; spooling")
            self._settle(batch, f"kafka append failed: {exc!r}")
        except BaseException:
            self._settle(batch, "kafka log cancelled while sending")
            raise
        else:
            wait.watch(delivery, functools.partial(self._delivered, batch, delivery))

    def _delivered(self, batch: OpenBatch, delivery: asyncio.Future[Any], in_time: bool) -> None:
        if not in_time:
            delivery.add_done_callback(_observe)  # its late failure (the producer dropped) is no error of ours
            self._settle(batch, f"kafka did not acknowledge within {self.config.append_budget_ms} ms")
        elif delivery.cancelled() or delivery.exception() is not None:
            self._settle(batch, f"kafka send failed: {_failure(delivery)!r}")
        else:
            self._settle(batch, "")

    def _settle(self, batch: OpenBatch, reason: str) -> None:
        """Answer a batch: acknowledged, or (`reason` given) each record once its spooled copy is fsync'd."""
        if batch.settled.done():
            return
        batch.close()
        self._batches_out.discard(batch)
        if not self._batches_out:
            self._direct_idle.set()
        if not reason:
            batch.settled.set_result(None)
            return
        self._fall_back(reason)
        batch.settled.set_result(tuple(self._spool(t, r) for t, r in zip(batch.topics, batch.records, strict=True)))

    def _spool(self, topic: str, record: Outgoing) -> asyncio.Future[None] | BaseException:
        try:
            _, written = self.spool.enqueue(topic, record.key, record.value, record.headers, record.timestamp_ms)
        except LogUnavailable as exc:
            return exc
        self._note_spooled(record.timestamp_ms)
        return written

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
            self._abandon = True
            if self._open is not None:
                self._open.close()  # what joins now would wait on a producer that is being dropped
            if self._producer is not None:
                halt_sender(self._producer)  # its unacknowledged records are spooled: no retry may reach a new broker
            self._reason = reason
        self._wake.set()

    # -- shipping the spool ----------------------------------------------------------------

    async def _ship_forever(self) -> None:
        backoff = self.config.retry_backoff_ms / 1000
        while True:
            if self._direct:
                self._wake.clear()
                await self._wake.wait()
                continue
            if self._abandon:
                await self._abandon_producer()
            try:
                await self._ship()
                self._ship_ended.set()
                backoff = self.config.retry_backoff_ms / 1000
                continue
            except IdempotenceRefused as exc:  # said by _connect: once, then rarely
                self._ship_ended.set()
                self._reason = str(exc)
            except (KafkaError, LogUnavailable, OSError, TimeoutError) as exc:
                self._ship_ended.set()
                self._reason = f"kafka unavailable: {exc}"
                logger.info("spool shipping paused (%s); retrying in %.1fs", self._reason, backoff)
                await self._recycle_if_broken(exc)
            except Exception:  # a bug: tasks.supervise logs it with its traceback, counts it, ships again later
                self._ship_ended.set()  # a stop waiting for this attempt goes on without the spool
                self._reason = "spool shipping failed unexpectedly (see the log)"
                raise
            await self._back_off(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _back_off(self, seconds: float) -> None:
        """Wait `seconds` before the next try, or until a stop asks for one now."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._kick.wait(), seconds)
        self._kick.clear()

    async def _abandon_producer(self) -> None:
        """Drop the producer that direct appends used, with the sends it still holds.

        `_fall_back` halted its sender: every record it still holds is spooled
        (or will be, once its group's budget runs out). Left alone, aiokafka
        would retry them against whatever broker answers next, maybe a new one
        before the shipper has created its topics there (Tansu 0.6 then
        mis-numbers the offsets of the partition it creates implicitly, and
        readers skip records): the spooled copies go instead, from a fresh
        producer, after the topic check.
        """
        self._abandon = False
        producer, self._producer = self._producer, None
        if producer is not None:
            await stop_producer(producer, ABANDON_GRACE_S)

    async def _ship(self) -> None:
        """Ship every pending record in seq order; return once appends go to Kafka again."""
        await self._connect()
        cursor, window = self.spool.start_cursor(), 1  # probe with one record, then open the window
        while True:
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
        records = [Outgoing(self._name(r.topic), r.key, r.value, r.headers, r.timestamp_ms) for r in batch]
        sent: list[Sent] = []
        try:
            async with asyncio.timeout(timeout):
                await send_batches(self._producer, records, sent)
        finally:
            for s in sent:  # a delivery that fails after we gave up on it is not left unread
                if s.delivery is not None:
                    s.delivery.add_done_callback(_observe)
        await asyncio.wait([s.delivery for s in sent if s.delivery is not None], timeout=timeout)
        for s in sent:
            if not succeeded(s.delivery):
                raise _failure(s.delivery)
        await self.spool.mark_shipped(batch[-1].seq)
        self._reason = f"shipping spooled records to kafka ({self.spool.pending} left)"

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


def _observe(future: asyncio.Future[Any]) -> None:
    """Read a delivery's outcome so that asyncio does not log it as an exception never retrieved."""
    if not future.cancelled():
        future.exception()


def _failure(future: asyncio.Future[Any] | None) -> KafkaError:
    if future is None or not future.done():
        return KafkaTimeoutError("no acknowledgement from kafka")
    error = future.exception() if not future.cancelled() else None
    return error if isinstance(error, KafkaError) else KafkaError(repr(error))


async def _cancel_within(task: asyncio.Task[Any], timeout: float) -> None:
    """Cancel `task` and wait at most `timeout` s for it to end, cancelling again should it swallow one.

    On Python 3.11 a cancellation that lands as an `asyncio.timeout()` inside the task expires
    can be taken for that timeout, and a `while True` loop then goes on: one cancel is not enough.
    """
    end = time.monotonic() + timeout
    while not task.done() and time.monotonic() < end:
        task.cancel()
        await asyncio.wait({task}, timeout=min(0.1, max(0.0, end - time.monotonic())))
    if not task.done():
        logger.warning("kafka log: %s did not stop within %.1f s", task.get_name(), timeout)
    elif not task.cancelled() and task.exception() is not None:
        logger.warning("kafka log: %s ended with %r", task.get_name(), task.exception())
