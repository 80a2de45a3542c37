"""The console's feed: written once a second by the notifier, read by every edge worker that serves the page.

Why the notifier: a service has exactly one (inside the process with one worker, a child of
`clickbus run` with several), it already sees every click's verdict and every callback's outcome
(`RecentClicks`), and sampling there costs the edge workers nothing, so an open console does not
slow clicks down. It writes one small JSON document (`FEED_FILE`) beside the metrics' sample
files, in memory (`/dev/shm`) where the service has them, else in `data_dir`; replaced atomically.
A worker whose feed is missing or stale (no notifier: `--no-notifier`, or one on another host)
samples the metrics itself while the page is open (`LocalFeed`), without the recent clicks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import orjson

from clickbus.config import Config
from clickbus.console.recent import RecentClicks
from clickbus.console.samples import Sampler
from clickbus.metrics import Metrics, multiprocess_dir

logger = logging.getLogger(__name__)

FEED_FILE = "console-feed.json"
EVERY_S = 1.0
STALE_S = 5.0  # a feed not rewritten for this long has no notifier behind it


def feed_path(config: Config) -> Path:
    """Where the service's feed lives: beside the shared metrics files, else in `data_dir`."""
    return (multiprocess_dir() or config.data_dir) / FEED_FILE


class Feed:
    """The notifier's side: sample every second, write the samples, the totals and the recent clicks."""

    def __init__(self, config: Config, metrics: Metrics, recent: RecentClicks) -> None:
        self.path = feed_path(config)
        self.sampler = Sampler(config, metrics)
        self.recent = recent
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="clickbus-console-feed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            rows = self.recent.rows()  # on the loop, where the ring changes
            try:
                await asyncio.to_thread(self.write, rows)
            except OSError as exc:  # a full disk (without /dev/shm): the console goes stale, clicks go on
                logger.warning("console feed not written: %s", exc)
            await asyncio.sleep(EVERY_S)

    def write(self, recent: list[dict[str, Any]]) -> None:
        """Take a sample and replace the feed file (blocking: run on a thread)."""
        self.sampler.tick()
        document = {
            "written": time.time(),
            "samples": list(self.sampler.ring),
            "latest": self.sampler.latest,
            "recent": recent,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{FEED_FILE}.{os.getpid()}")
        temporary.write_bytes(orjson.dumps(document))
        os.replace(temporary, self.path)


class FeedReader:
    """An edge worker's side: the feed file, parsed once per rewrite; a sampler of its own when there is none."""

    def __init__(self, config: Config, metrics: Metrics) -> None:
        self.path = feed_path(config)
        self.config = config
        self.metrics = metrics
        self._mtime_ns = -1
        self._document: dict[str, Any] = {}
        self._local: Sampler | None = None
        self._local_at = 0.0
        self._lock = threading.Lock()  # pages are answered on threads

    def read(self, now: float | None = None) -> dict[str, Any]:
        """The feed as the page gets it: samples, totals, recent clicks (None without a notifier), its source."""
        with self._lock:
            return self._read(time.time() if now is None else now)

    def _read(self, now: float) -> dict[str, Any]:
        document = self._file()
        if document and now - float(document.get("written", 0)) < STALE_S:
            return {**document, "source": "notifier"}
        return self._sampled(now)

    def _file(self) -> dict[str, Any]:
        try:
            mtime_ns = self.path.stat().st_mtime_ns
            if mtime_ns != self._mtime_ns:
                self._document = orjson.loads(self.path.read_bytes())
                self._mtime_ns = mtime_ns
        except (OSError, orjson.JSONDecodeError):
            return {}
        return self._document

    def _sampled(self, now: float) -> dict[str, Any]:
        if self._local is None:
            self._local = Sampler(self.config, self.metrics)
        if now - self._local_at >= EVERY_S:  # at most a sample a second, however many pages ask
            self._local.tick(now)
            self._local_at = now
        return {
            "written": self._local_at,
            "samples": list(self._local.ring),
            "latest": self._local.latest,
            "recent": None,
            "source": "edge",
        }
