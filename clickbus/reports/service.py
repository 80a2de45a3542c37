"""The reporter: the rollup and the store's upkeep (folding old hours into days, retention), together.

It runs where the notifier runs (inside `clickbus run`) or alone (`clickbus reporter`). It never holds up
the edge or the notifier: its start waits for the store in the background, and a store that is down only
pauses the counting (nothing is counted twice when it comes back).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

from clickbus import tasks
from clickbus.config import Config
from clickbus.log.port import Log
from clickbus.reports.port import Store, StoreUnavailable
from clickbus.reports.rollup import Rollup
from clickbus.reports.window import kept_since

logger = logging.getLogger(__name__)

START_RETRY_S = 2.0


def open_store(config: Config, *, read_only: bool = False) -> Store:
    """The store the configuration names (not started). Read-only stores run no migrations."""
    settings = config.reports
    if settings.store == "postgres":
        from clickbus.reports.postgres import PostgresStore  # the driver loads only where it is used

        assert settings.postgres_dsn is not None  # the configuration demands it
        return PostgresStore(settings.postgres_dsn.value.decode(), read_only=read_only)
    from clickbus.reports.sqlite import SQLiteStore

    return SQLiteStore(Path(config.reports_path), read_only=read_only)


class Reporter:
    """Counts the notifier's verdicts and outcomes into the configured store."""

    def __init__(self, config: Config, log: Log, store: Store | None = None) -> None:
        self.config = config
        self.store = store if store is not None else open_store(config)
        settings = config.reports
        self.rollup = Rollup(
            log, self.store, settings.group, batch_max=settings.batch_max, dedup_window_s=settings.dedup_window_s
        )
        self._task: asyncio.Task[None] | None = None
        self._started = False
        self._rolling = False

    async def start(self) -> None:
        """Start in the background: a store that is down is waited for, without holding up the caller.

        Supervised (`clickbus.tasks`): a start the log refuses (a read-only `data_dir`) or a failing upkeep is
        logged, counted, shown on the internal `/readyz`, and tried again.
        """
        self._task = tasks.supervise("reporter", self._live)

    async def stop(self, timeout: float) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._rolling:
            await self.rollup.stop(timeout)
        if self._started:
            await self.store.stop()

    async def _live(self) -> None:
        while not self._started:  # again after a failure below: started once, it stays started
            try:
                await self.store.start()
                self._started = True
            except StoreUnavailable as exc:
                logger.warning("reports store unavailable, retrying: %s", exc)
                await asyncio.sleep(START_RETRY_S)
        if not self._rolling:
            await self.rollup.start()
            self._rolling = True
        logger.info("reporter counting into the %s store (group %s)", self.config.reports.store, self.rollup.group)
        while True:
            await self.maintain()
            await asyncio.sleep(self.config.reports.maintain_every_s)

    async def maintain(self, now: float | None = None) -> None:
        """Fold hours older than `reports.hourly_days` into days, delete rows past retention, forget old dedup keys."""
        settings = self.config.reports
        now = time.time() if now is None else now
        fold_before = int(now - settings.hourly_days * 86400) // 86400 * 86400
        try:
            await self.store.maintain(fold_before=fold_before, delete_before=kept_since(now, settings.retention_months))
        except StoreUnavailable as exc:
            logger.warning("reports upkeep skipped: %s", exc)
