"""The edge application factories: the public listener's and the internal one's. Nothing happens at import time.

The public application serves what browsers and publishers call (`/ck`, `/i`, the beacons, the
server-side click API, health) and, only when insert keys are configured, keyed insertion. The
admin application serves the ad server and operators (insertion, metrics, OpenAPI, health) on
`edge.admin_listen`; it shares the public application's objects and owns none of them, so the
public application's cleanup contexts start and stop everything once, except the thread each
application's insertion uses for large markups (see `insert.insertion_thread`), which is its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from clickbus import runtime
from clickbus.config import Config
from clickbus.console import routes as console
from clickbus.creative import Inserter
from clickbus.edge import admin_guard, beacons, health, insert, openapi, pixel, prometheus, redirect, server_clicks
from clickbus.edge.apikeys import ApiKeys, RateLimiter
from clickbus.edge.appkeys import (
    ADDRESS_SECRET,
    API_KEYS,
    CONFIG,
    DRAINING,
    INSERT_KEYS,
    INSERTER,
    KEYRING,
    LOG,
    METRICS,
    RATE_LIMITER,
)
from clickbus.edge.buckets import FileBuckets
from clickbus.edge.connections import drop_server_header
from clickbus.errors import ClickbusError
from clickbus.keystore import load_keyring
from clickbus.log import Log
from clickbus.metrics import Metrics, default_metrics
from clickbus.tokens import Keyring

BUCKETS_FILE = "rate-buckets"


def create_app(
    config: Config,
    *,
    log: Log | None = None,
    keyring: Keyring | None = None,
    metrics: Metrics | None = None,
    notifier: bool = False,
) -> web.Application:
    """Build the public edge for `config`; `log`, `keyring` and `metrics` default to what the configuration names.

    With `notifier=True` the notifier runs in the same process, on the same log.
    """
    app = web.Application(client_max_size=config.edge.max_body_bytes)
    app[CONFIG] = config
    app[KEYRING] = keyring if keyring is not None else load_keyring(config)
    app[ADDRESS_SECRET] = app[KEYRING].derive(b"client address")
    app[INSERTER] = Inserter(app[KEYRING], config.edge.public_url, ttl_s=config.tokens.ttl_s)
    app[METRICS] = metrics if metrics is not None else default_metrics()
    app[LOG] = runtime.metered_log(config, app[METRICS], log)
    app[DRAINING] = asyncio.Event()
    app[API_KEYS] = ApiKeys(config.api_keys)
    app[RATE_LIMITER] = RateLimiter(config.api_keys)
    app[INSERT_KEYS] = ApiKeys(config.insert_keys)
    # first in, last out: the final flush follows the log's stop
    app.cleanup_ctx.append(_during(lambda: runtime.flushing(app[METRICS], app[LOG])))
    app.cleanup_ctx.append(_during(lambda: runtime.started(app[LOG], config.edge.shutdown_timeout_s)))
    app.cleanup_ctx.append(_sharing_buckets)
    if notifier:
        app.cleanup_ctx.append(_notifying(config, app[LOG], app[METRICS]))
    for module in (health, redirect, beacons, pixel, server_clicks):
        app.add_routes(module.routes)
    if app[INSERT_KEYS]:
        app.add_routes(insert.keyed_routes)
        app.cleanup_ctx.append(insert.insertion_thread)
    app.on_response_prepare.append(drop_server_header)
    return app


def create_admin_app(edge: web.Application) -> web.Application:
    """The internal listener's application: insertion, metrics, OpenAPI and health, on `edge`'s objects."""
    admin = web.Application(
        client_max_size=edge[CONFIG].edge.max_body_bytes, middlewares=[admin_guard.known_hosts_only]
    )
    admin[CONFIG] = edge[CONFIG]
    admin[KEYRING] = edge[KEYRING]
    admin[INSERTER] = edge[INSERTER]
    admin[METRICS] = edge[METRICS]
    admin[LOG] = edge[LOG]
    admin[DRAINING] = edge[DRAINING]
    for module in (health, insert, prometheus, openapi):
        admin.add_routes(module.routes)
    console.install(admin)
    admin.cleanup_ctx.append(insert.insertion_thread)  # each listener its own: no stop order between the two
    admin.on_response_prepare.append(drop_server_header)
    admin.on_response_prepare.append(admin_guard.security_headers)
    return admin


async def _sharing_buckets(app: web.Application) -> AsyncIterator[None]:
    """The API keys' rate limits hold for every worker of the host: their buckets are in one file (see buckets)."""
    limiter = app[RATE_LIMITER]
    if limiter:
        data_dir = app[CONFIG].data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        limiter.share(FileBuckets(data_dir / BUCKETS_FILE, len(app[CONFIG].api_keys)))
    yield
    limiter.close()


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
