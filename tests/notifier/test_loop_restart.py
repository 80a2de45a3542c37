"""A notifier loop that fails is restarted: it leaves its group and rejoins from the committed offsets, so that
records it had fetched and never finished are read again (at-least-once), and the failure is shown."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from pathlib import Path

import orjson
import pytest

from clickbus import tasks
from clickbus.log import EmbeddedLog, Topic
from clickbus.log.port import Entry, TopicPartition
from clickbus.metrics import create_metrics
from clickbus.notifier.consumer import GroupLoop
from tests.support.waiting import eventually

RECORDS = 50


class Collect:
    """A handler that finishes every record at once, keeping its value."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    async def prepare(self, firsts: Mapping[TopicPartition, int]) -> None:
        return None

    def accept(self, entry: Entry) -> Awaitable[None]:
        self.seen.append(int(orjson.loads(entry.value)["n"]))
        return asyncio.sleep(0)


async def test_a_loop_that_raises_rejoins_from_its_commits_and_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = EmbeddedLog(tmp_path / "log")
    await log.start()
    handler = Collect()
    loop = GroupLoop(log, [Topic.CLICKS], "g", handler, max_in_flight=8, commit_interval_s=0.02, drain_s=1.0)
    loop.metrics = create_metrics()
    real = loop._prepare
    broken = [True]

    async def fails_once(entries: list[Entry]) -> None:
        if broken[0] and entries:
            broken[0] = False
            raise RuntimeError("a bug between fetch and spawn")  # these entries were fetched, never started
        await real(entries)

    monkeypatch.setattr(loop, "_prepare", fails_once)
    try:
        await loop.start()
        for n in range(RECORDS):
            await log.append(Topic.CLICKS, b"k", orjson.dumps({"n": n}))
        await eventually(lambda: set(handler.seen) == set(range(RECORDS)))
        (failed,) = tasks.failures()
        assert (failed.name, failed.failures, failed.last_error) == (
            "notifier-loop:g",
            1,
            "RuntimeError: a bug between fetch and spawn",
        )
    finally:
        await loop.stop(2)
        await log.stop(2)
