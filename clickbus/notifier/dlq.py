"""Dead letters: list the ones not yet replayed, and re-inject them as fresh parked deliveries.

Replaying is itself a consumer group on `Topic.DLQ` (`<group>.dlq-replay`):
what it has re-injected it commits, so `dlq list` shows only what is still
pending and a replay interrupted half-way resumes where it stopped. A
replayed click goes to `Topic.RETRY` due at once, with a new retry horizon.

A dead letter may be in the topic twice (the Kafka spool ships a copy of an
append whose first send arrived late): copies share an `idempotency_key`, and
both commands treat them as one letter, also when the first copy was replayed
(and committed) before the second arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from clickbus.log.port import Consumer, Entry, Log, Topic, TopicPartition
from clickbus.notifier.retry import Parked

REPLAY_GROUP_SUFFIX = ".dlq-replay"
FETCH_WAIT_S = 0.5
BATCH = 500


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A dead letter and where it sits in the DLQ topic."""

    entry: Entry
    parked: Parked
    key: str | None  # the record's idempotency_key; None for letters written before records had one

    def summary(self) -> dict[str, Any]:
        p = self.parked
        return {
            "offset": self.entry.offset,
            "partition": self.entry.partition,
            "click_id": p.click.click_id,
            "member_id": p.click.member_id,
            "attempts": p.attempt,
            "reason": p.reason,
            "last_status": p.last_status,
            "last_error": p.last_error,
            "first_ms": p.first_ms,
            "idempotency_key": p.idempotency_key,
        }


def replay_group(notifier_group: str) -> str:
    return notifier_group + REPLAY_GROUP_SUFFIX


async def _drain(consumer: Consumer) -> list[Entry]:
    entries: list[Entry] = []
    while batch := await consumer.fetch(max_records=BATCH, timeout_s=FETCH_WAIT_S):
        entries += batch
    return entries


def _key(value: bytes) -> str | None:
    key = orjson.loads(value).get("idempotency_key")
    return key if isinstance(key, str) else None


def _letter(entry: Entry) -> DeadLetter | None:
    try:
        return DeadLetter(entry, Parked.from_json(entry.value), _key(entry.value))
    except (orjson.JSONDecodeError, TypeError, AttributeError, KeyError):
        return None  # not a dead letter clickbus wrote; nothing to replay


def _letters(entries: Sequence[Entry], seen: set[str]) -> list[DeadLetter]:
    """The letters in `entries` whose key is not in `seen` (which they join): one per dead letter."""
    letters = []
    for entry in entries:
        letter = _letter(entry)
        if letter is None or letter.key in seen:
            continue
        if letter.key is not None:
            seen.add(letter.key)
        letters.append(letter)
    return letters


async def _replayed_keys(log: Log, entries: Sequence[Entry]) -> set[str]:
    """Keys of the letters before the group's position in the partitions of `entries`: those already replayed."""
    before: dict[int, int] = {}
    for entry in entries:
        before.setdefault(entry.partition, entry.offset)
    todo = {p for p, first in before.items() if first > 0}
    keys: set[str] = set()
    if not todo:
        return keys
    reader = log.read(Topic.DLQ, from_beginning=True, follow=False)
    try:
        async for entry in reader:
            if entry.partition not in todo:
                continue
            if entry.offset >= before[entry.partition]:
                todo.discard(entry.partition)
                if not todo:
                    break
                continue
            with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
                if (key := _key(entry.value)) is not None:
                    keys.add(key)
    finally:
        if (aclose := getattr(reader, "aclose", None)) is not None:
            await aclose()
    return keys


async def pending(log: Log, group: str) -> list[DeadLetter]:
    """Dead letters not yet replayed, each once (reads without committing)."""
    consumer = log.consumer([Topic.DLQ], replay_group(group))
    await consumer.start()
    try:
        entries = await _drain(consumer)
        return _letters(entries, await _replayed_keys(log, entries))
    finally:
        await consumer.stop(5.0)


async def replay(log: Log, group: str, *, on_start: Callable[[int], None], on_each: Callable[[], None]) -> int:
    """Re-inject every pending dead letter into `Topic.RETRY`, each once; returns how many."""
    consumer = log.consumer([Topic.DLQ], replay_group(group))
    await consumer.start()
    try:
        entries = await _drain(consumer)
        seen = await _replayed_keys(log, entries)
        on_start(len(_letters(entries, set(seen))))
        done = 0
        for start in range(0, len(entries), BATCH):
            chunk = entries[start : start + BATCH]
            letters = _letters(chunk, seen)
            await asyncio.gather(*(_reinject(log, letter, on_each) for letter in letters))
            await consumer.commit(_next_offsets(chunk))
            done += len(letters)
        return done
    finally:
        await consumer.stop(5.0)


async def _reinject(log: Log, letter: DeadLetter, on_each: Callable[[], None]) -> None:
    again = letter.parked.replayed(time.time_ns() // 1_000_000)
    await log.append(Topic.RETRY, again.click.click_id.encode(), again.to_json())
    on_each()


def _next_offsets(entries: Sequence[Entry]) -> dict[TopicPartition, int]:
    offsets: dict[TopicPartition, int] = {}
    for entry in entries:
        tp = (entry.topic, entry.partition)
        offsets[tp] = max(offsets.get(tp, 0), entry.offset + 1)
    return offsets
