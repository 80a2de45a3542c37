"""Dead letters: list the ones not yet replayed, and re-inject them as fresh parked deliveries.

Replaying is itself a consumer group on `Topic.DLQ` (`<group>.dlq-replay`):
what it has re-injected it commits, so `dlq list` shows only what is still
pending and a replay interrupted half-way resumes where it stopped. A
replayed click goes to `Topic.RETRY` due at once, with a new retry horizon.
"""

from __future__ import annotations

import asyncio
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
        }


def replay_group(notifier_group: str) -> str:
    return notifier_group + REPLAY_GROUP_SUFFIX


async def _drain(consumer: Consumer) -> list[Entry]:
    entries: list[Entry] = []
    while batch := await consumer.fetch(max_records=BATCH, timeout_s=FETCH_WAIT_S):
        entries += batch
    return entries


def _letters(entries: Sequence[Entry]) -> list[DeadLetter]:
    letters = []
    for entry in entries:
        try:
            letters.append(DeadLetter(entry, Parked.from_json(entry.value)))
        except (orjson.JSONDecodeError, TypeError, AttributeError, KeyError):
            continue  # not a dead letter clickbus wrote; nothing to replay
    return letters


async def pending(log: Log, group: str) -> list[DeadLetter]:
    """Dead letters not yet replayed (reads without committing)."""
    consumer = log.consumer([Topic.DLQ], replay_group(group))
    await consumer.start()
    try:
        return _letters(await _drain(consumer))
    finally:
        await consumer.stop(5.0)


async def replay(log: Log, group: str, *, on_start: Callable[[int], None], on_each: Callable[[], None]) -> int:
    """Re-inject every pending dead letter into `Topic.RETRY`; returns how many."""
    consumer = log.consumer([Topic.DLQ], replay_group(group))
    await consumer.start()
    try:
        entries = await _drain(consumer)
        on_start(len(entries))
        done = 0
        for start in range(0, len(entries), BATCH):
            chunk = entries[start : start + BATCH]
            letters = _letters(chunk)
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
