"""Retention on the defaults: it runs again and again before the first segment ever closes."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from clickbus import tasks
from clickbus.log import EmbeddedLog, Topic
from clickbus.log.retention import Retention, closed_segments
from clickbus.log.segment import partition_dir
from tests.support.waiting import eventually


def test_a_partition_with_only_its_active_segment_has_no_closed_segment(tmp_path: Path) -> None:
    directory = tmp_path / "p"
    directory.mkdir()
    (directory / f"{0:020d}.log").write_bytes(b"")
    assert closed_segments(directory, 0) == []  # before: ValueError from zip(strict=True)


def count_runs(log: EmbeddedLog, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that grows by one at each retention run of `log`."""
    runs: list[int] = []
    enforce = log.enforce_retention

    async def counted() -> None:
        runs.append(1)
        await enforce()

    monkeypatch.setattr(log, "enforce_retention", counted)
    return runs


async def test_retention_on_the_defaults_survives_its_first_runs_with_no_closed_segment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = EmbeddedLog(tmp_path / "log", retention_check_s=0.02)  # 64 MB segments: none closes in this test
    runs = count_runs(log, monkeypatch)
    await log.start()
    try:
        await log.append(Topic.CLICKS, b"k", orjson.dumps({"n": 0}))
        await eventually(lambda: len(runs) >= 3)  # before: the first run raised, the task died, runs stayed 1
        assert tasks.failures() == []
        assert partition_dir(log.path, Topic.CLICKS, 0).is_dir()
    finally:
        await log.stop(5)  # before: re-raised the dead task's ValueError


async def test_retention_still_holds_its_bound_once_segments_close_after_those_first_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: dead after its first run, retention never deleted a segment again (3.8 MB kept for a 2 MB bound)."""
    log = EmbeddedLog(tmp_path / "log", segment_bytes=1024, retention=Retention(3600.0, 4096), retention_check_s=0.02)
    runs = count_runs(log, monkeypatch)
    await log.start()
    try:
        await log.append(Topic.CLICKS, b"k", orjson.dumps({"n": 0}))
        await eventually(lambda: len(runs) >= 2)  # the first runs: one partition, no closed segment
        for n in range(1, 200):
            await log.append(Topic.CLICKS, b"k", orjson.dumps({"n": n, "pad": "x" * 40}))
        directory = partition_dir(log.path, Topic.CLICKS, 0)
        await eventually(lambda: sum(p.stat().st_size for p in directory.glob("*.log")) <= 4096 + 1024)
    finally:
        await log.stop(5)
