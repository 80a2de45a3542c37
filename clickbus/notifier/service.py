"""The notifier: two group loops (new clicks, parked retries) sharing one dispatcher."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

from clickbus import devices, tasks
from clickbus.config import Config
from clickbus.console.feed import Feed
from clickbus.log.port import Log, Topic
from clickbus.metrics import Metrics, default_metrics
from clickbus.notifier.bidders import bidders_of
from clickbus.notifier.consumer import GroupLoop
from clickbus.notifier.dispatch import Dispatcher
from clickbus.notifier.handlers import IntakeHandler, RetryHandler
from clickbus.notifier.ivt import crawler_check
from clickbus.notifier.outcomes import Recorder
from clickbus.notifier.retry import Schedule

logger = logging.getLogger(__name__)

RETRY_GROUP_SUFFIX = ".retry"
FAILED_START_STOP_S = 1.0  # the retry loop it had started has nothing in flight yet
START_MAX_DELAY_S = 30.0  # between tries of a start that fails


class Notifier:
    """Turns raw clicks into bidder deliveries; `start` and `stop` bracket its life."""

    def __init__(self, config: Config, log: Log, metrics: Metrics | None = None) -> None:
        settings = config.notifier
        devices.preload()  # before the process serves: paid during the first clicks it took a second of their CPU
        self.metrics = metrics if metrics is not None else default_metrics()
        self.metrics.label_members(config.members)
        self.bidders = bidders_of(config.members, settings)
        self.recorder = Recorder(log, self.metrics)
        schedule = Schedule(settings.retry_base_s, settings.retry_max_delay_s, settings.retry_horizon_s)
        self.dispatcher = Dispatcher(self.bidders, schedule, self.recorder)
        intake = IntakeHandler(
            log, settings, self.dispatcher, self.recorder, crawler_check(settings.crawler_cache_size), {}
        )
        topics = [Topic.CLICKS, Topic.IMPRESSIONS] if settings.dedup_impressions else [Topic.CLICKS]
        drain_s = max((m.timeout_s for m in config.members.values()), default=2.0)
        self.intake = GroupLoop(
            log,
            topics,
            settings.group,
            intake,
            max_in_flight=settings.max_in_flight,
            commit_interval_s=settings.commit_interval_s,
            drain_s=drain_s,
            metrics=self.metrics,
        )
        self.feed = Feed(config, self.metrics, self.recorder.recent)  # the console's figures (one notifier a service)
        self.parked = RetryHandler(self.dispatcher, self.recorder, log)
        self.retries = GroupLoop(
            log,
            [Topic.RETRY],
            settings.group + RETRY_GROUP_SUFFIX,
            self.parked,
            max_in_flight=settings.max_parked,
            commit_interval_s=settings.commit_interval_s,
            drain_s=drain_s,
            metrics=self.metrics,
        )

    @property
    def counts(self) -> Counter[str]:
        """Outcomes recorded so far, by outcome name."""
        return self.recorder.counts

    async def start(self) -> None:
        """Start the bidders' clients and both loops; one that fails leaves nothing running, to be tried again."""
        for member_id, bidder in self.bidders.items():
            await bidder.start()
            bidder.shown_state = bidder.breaker.state
            self.metrics.breaker(member_id, bidder.shown_state)  # every bidder shows, healthy or not
        await self.retries.start()
        try:
            await self.intake.start()
        except BaseException:
            await self.retries.stop(FAILED_START_STOP_S)
            raise
        self.feed.start()
        logger.info("notifier started for members %s", sorted(self.bidders))

    async def start_retrying(self) -> None:
        """Start, trying again with a growing delay while it cannot (a read-only data_dir, no broker).

        Returns once started; cancel it to give up (at a stop signal).
        """
        await tasks.supervise("notifier-start", self.start, metrics=self.metrics, max_delay_s=START_MAX_DELAY_S)

    async def stop(self, timeout: float) -> None:
        """Stop both loops (in-flight deliveries get a grace period), then close the bidders' clients."""
        self.parked.stopping.set()  # parked retries still waiting stay in the log for the next start
        await self.feed.stop()
        await asyncio.gather(self.intake.stop(timeout), self.retries.stop(timeout))
        await self.recorder.stop()
        for bidder in self.bidders.values():
            await bidder.close()
