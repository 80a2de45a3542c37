"""The embedded log's readiness follows whether it can write: a read-only or full data directory, and back.

Real faults (see tests/support/mounts.py): a read-only bind mount, a 2 MiB tmpfs filled to the last byte.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from clickbus.errors import LogUnavailable
from clickbus.log import EmbeddedLog, Topic
from tests.support.mounts import fill, mount_skip_reason, read_only, tmpfs
from tests.support.waiting import eventually

pytestmark = pytest.mark.skipif((reason := mount_skip_reason()) is not None, reason=reason or "")


@pytest.fixture
async def stopping() -> AsyncIterator[list[EmbeddedLog]]:
    logs: list[EmbeddedLog] = []
    yield logs
    for log in logs:
        await log.stop(5)


async def append(log: EmbeddedLog, topic: str = Topic.CLICKS) -> None:
    await log.append(topic, b"k", orjson.dumps({"n": 1}))


async def refused(log: EmbeddedLog, topic: str) -> str:
    """Append to `topic` until the full disk refuses (the segment's last page may still hold a few); the error."""
    for _ in range(1000):
        try:
            await log.append(topic, b"k", orjson.dumps({"pad": "x" * 500}))
        except LogUnavailable as exc:
            return str(exc)
    raise AssertionError("the full disk took every append")


async def test_a_read_only_directory_is_not_ready_from_the_start_and_ready_once_writable(
    tmp_path: Path, stopping: list[EmbeddedLog]
) -> None:
    directory = tmp_path / "log"
    directory.mkdir()
    log = EmbeddedLog(directory)
    with read_only(directory) as switch:
        await log.start()
        stopping.append(log)
        health = log.health
        assert not health.ready and "Read-only file system" in health.reason  # before: ready, every append refused
        with pytest.raises(LogUnavailable):
            await append(log)
        assert not log.health.ready
        switch.off()
        await eventually(lambda: log.health.ready)  # the probe: no append needed to see it
    await append(log)


async def test_after_a_full_disk_clears_readiness_recovers_on_any_write(
    tmp_path: Path, stopping: list[EmbeddedLog]
) -> None:
    """Before: each topic's writer kept its own error, so readiness waited for the topic that failed."""
    with tmpfs(tmp_path / "disk", "2m") as disk:
        log = EmbeddedLog(disk / "log")
        await log.start()
        stopping.append(log)
        await append(log, Topic.CLICKS)
        await append(log, Topic.DELIVERIES)
        filler = fill(disk)
        assert "No space left" in await refused(log, Topic.DELIVERIES)
        assert not log.health.ready and "No space left" in log.health.reason
        filler.unlink()
        await append(log, Topic.CLICKS)  # another topic's write succeeds: the disk takes writes again
        assert log.health.ready
        filler = fill(disk)
        await refused(log, Topic.DELIVERIES)
        filler.unlink()
        await eventually(lambda: log.health.ready)  # and with no write at all, the probe sees it
