"""The edge application factory. Nothing happens at import time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from clickbus import runtime
from clickbus.config import Config
from clickbus.creative import Inserter
from clickbus.edge import beacons, health, insert, openapi, pixel, prometheus, redirect, server_clicks
from clickbus.edge.apikeys import ApiKeys, RateLimiter
from clickbus.edge.appkeys import API_KEYS, CONFIG, DRAINING, INSERTER, KEYRING, LOG, METRICS, RATE_LIMITER
from clickbus.errors import ClickbusError
from clickbus.keystore import load_keyring
from clickbus.log import Log
from clickbus.metrics import Metrics, default_metrics
from clickbus.tokens import Keyring


def create_app(
    config: Config,
    *,
    log: Log | None = None,
    keyring: Keyring | None = None,
    metrics: Metrics | None = None,
    notifier: bool = False,
) -> web.Application:
    """Build the edge for `config`; `log`, `keyring` and `metrics` default to what the configuration names.

    With `notifier=True` the notifier runs in the same process, on the same log.
    """
    app = web.Application(client_max_size=config.edge.max_body_bytes)
    app[CONFIG] = config
    app[KEYRING] = keyring if keyring is not None else load_keyring(config)
    app[INSERTER] = Inserter(app[KEYRING], config.edge.public_url, ttl_s=config.tokens.ttl_s)
    app[METRICS] = metrics if metrics is not None else default_metrics()
    app[LOG] = runtime.metered_log(config, app[METRICS], log)
    app[DRAINING] = asyncio.Event()
    app[API_KEYS] = ApiKeys(config.api_keys)
    app[RATE_LIMITER] = RateLimiter(config.api_keys)
    # first in, last out: the final flush follows the log's stop
    app.cleanup_ctx.append(_during(lambda: runtime.flushing(app[METRICS], app[LOG])))
    app.cleanup_ctx.append(_during(lambda: runtime.started(app[LOG], config.edge.shutdown_timeout_s)))
    if notifier:
        app.cleanup_ctx.append(_notifying(config, app[LOG], app[METRICS]))
    for module in (health, insert, redirect, beacons, pixel, server_clicks, prometheus, openapi):
        app.add_routes(module.routes)
    return app


def _during(
    context: Callable[[], contextlib.AbstractAsyncContextManager[object]],
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context running `context()` for the application's life."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        async with context():
            yield

    return ctx


def _notifying(config: Config, log: Log, metrics: Metrics) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        notifier = runtime.notifier(config, log, metrics)
        # Joining a Kafka consumer group can take several session timeouts: serve clicks meanwhile.
        starting = asyncio.create_task(notifier.start(), name="clickbus-notifier-start")
        starting.add_done_callback(_report_failed_start)
        yield
        if not starting.done():
            starting.cancel()
        with contextlib.suppress(asyncio.CancelledError, ClickbusError):
            await starting
        await notifier.stop(config.edge.shutdown_timeout_s)

    return ctx


def _report_failed_start(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logging.getLogger(__name__).error("notifier did not start: %s", task.exception())
