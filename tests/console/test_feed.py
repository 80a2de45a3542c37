"""The feed between the notifier and the edge workers: a small file each second, the whole ring every few seconds."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from clickbus.console.feed import FEED_FILE, HISTORY_FILE, STALE_S, TAIL, Feed, FeedReader
from clickbus.console.recent import RecentClicks
from clickbus.metrics import create_metrics
from tests.support.configs import build_config


def samples(first: int, last: int) -> list[dict[str, Any]]:
    return [{"t": float(t), "clicks": {"valid": 1.0}} for t in range(first, last + 1)]


def test_a_page_gets_the_history_once_then_what_is_new(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = build_config(tmp_path)
    feed = Feed(config, create_metrics(), RecentClicks())
    monkeypatch.setattr(feed.sampler, "tick", lambda now=None: None)  # the ring is set here, not sampled
    feed.sampler.ring.extend(samples(1, 100))
    feed.write([])
    assert len(orjson.loads((tmp_path / FEED_FILE).read_bytes())["samples"]) == TAIL
    reader = FeedReader(config, create_metrics())
    assert [s["t"] for s in reader.read(0)["samples"]] == [float(t) for t in range(1, 101)]
    assert [s["t"] for s in reader.read(95)["samples"]] == [96.0, 97.0, 98.0, 99.0, 100.0]
    feed.sampler.ring.extend(samples(101, 103))
    history = (tmp_path / HISTORY_FILE).stat().st_mtime_ns
    feed.write([])  # within HISTORY_EVERY_S: only the small file is written
    assert (tmp_path / HISTORY_FILE).stat().st_mtime_ns == history
    opened = reader.read(0)
    assert [s["t"] for s in opened["samples"]] == [float(t) for t in range(1, 104)]  # history, then the tail
    assert opened["source"] == "notifier" and opened["recent"] == []


def test_a_stale_feed_is_replaced_by_the_worker_sampling(tmp_path: Path) -> None:
    config = build_config(tmp_path)
    Feed(config, create_metrics(), RecentClicks()).write([])
    reader = FeedReader(config, create_metrics())
    assert reader.read(0)["source"] == "notifier"
    later = reader.read(0, now=time.time() + STALE_S + 1)
    assert later["source"] == "edge" and later["recent"] is None
