"""The console's feed: written once a second by the notifier, read by every edge worker that serves the page.

Why the notifier: a service has exactly one (inside the process with one worker, a child of
`clickbus run` with several), it already sees every click's verdict and every callback's outcome
(`RecentClicks`), and sampling there costs the edge workers nothing, so an open console does not
slow clicks down. It writes two JSON documents beside the metrics' sample files, in memory
(`/dev/shm`) where the service has them, else in `data_dir`, each replaced atomically: every second
`FEED_FILE`, small (the totals, the recent clicks, the last `TAIL` samples), which is all an open
page asks for; every `HISTORY_EVERY_S` `HISTORY_FILE`, the whole ring, read only when a page opens.
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
HISTORY_FILE = "console-history.json"
EVERY_S = 1.0
HISTORY_EVERY_S = 5.0
TAIL = 2 * int(HISTORY_EVERY_S / EVERY_S)  # the small feed overlaps the history: no sample falls between
STALE_S = 5.0  # a feed not rewritten for this long has no notifier behind it


def feed_path(config: Config, name: str = FEED_FILE) -> Path:
    """Where the service's feed lives: beside the shared metrics files, else in `data_dir`."""
    return (multiprocess_dir() or config.data_dir) / name


def _replace(path: Path, document: dict[str, Any], writer: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{id(writer)}")  # one writer per name
    temporary.write_bytes(orjson.dumps(document))
    os.replace(temporary, path)


class _Cached:
    """A JSON file, parsed again only when it has been replaced."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime_ns = -1
        self._document: dict[str, Any] = {}

    def read(self) -> dict[str, Any]:
        try:
            mtime_ns = self.path.stat().st_mtime_ns
            if mtime_ns != self._mtime_ns:
                self._document = orjson.loads(self.path.read_bytes())
                self._mtime_ns = mtime_ns
        except (OSError, orjson.JSONDecodeError):
            return {}
        return self._document


class Feed:
    """The notifier's side: sample every second, write the samples, the totals and the recent clicks."""

    def __init__(self, config: Config, metrics: Metrics, recent: RecentClicks) -> None:
        self.path = feed_path(config)
        self.history_path = feed_path(config, HISTORY_FILE)
        self.sampler = Sampler(config, metrics)
        self.recent = recent
        self._history_at = 0.0
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
            except Exception:  # a page's figures must never stop the notifier: log, and try again next second
                logger.exception("console feed not written")
            await asyncio.sleep(EVERY_S)

    def write(self, recent: list[dict[str, Any]]) -> None:
        """Take a sample and replace the feed file (blocking: run on a thread)."""
        self.sampler.tick()
        now = time.time()
        ring = self.sampler.ring
        if now - self._history_at >= HISTORY_EVERY_S:
            _replace(self.history_path, {"written": now, "samples": list(ring)}, self)
            self._history_at = now
        tail = list(ring)[-TAIL:]
        _replace(self.path, {"written": now, "samples": tail, "latest": self.sampler.latest, "recent": recent}, self)


class FeedReader:
    """An edge worker's side: the feed file, parsed once per rewrite; a sampler of its own when there is none."""

    def __init__(self, config: Config, metrics: Metrics) -> None:
        self.feed = _Cached(feed_path(config))
        self.history = _Cached(feed_path(config, HISTORY_FILE))
        self.config = config
        self.metrics = metrics
        self._local: Sampler | None = None
        self._local_at = 0.0
        self._lock = threading.Lock()  # pages are answered on threads

    def read(self, after: float = 0.0, now: float | None = None) -> dict[str, Any]:
        """The feed as the page gets it: samples after `after`, totals, recent clicks (None without a notifier)."""
        with self._lock:
            feed = self._read(after, time.time() if now is None else now)
        return {**feed, "samples": [s for s in feed["samples"] if s["t"] > after]}

    def _read(self, after: float, now: float) -> dict[str, Any]:
        document = self.feed.read()
        if not document or now - float(document.get("written", 0)) >= STALE_S:
            return self._sampled(now)
        tail = document["samples"]
        if tail and after < tail[0]["t"]:  # a page just opened: the history before the tail, too
            first = tail[0]["t"]
            older = [s for s in self.history.read().get("samples", []) if after < s["t"] < first]
            return {**document, "samples": older + tail, "source": "notifier"}
        return {**document, "source": "notifier"}

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
