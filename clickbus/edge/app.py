"""The edge application factories: the public listener's and the internal one's. Nothing happens at import time.

The public application serves what browsers and publishers call (`/ck`, `/i`, the beacons, the
server-side click API, health) and, only when insert keys are configured, keyed insertion. The
admin application serves the ad server and operators (insertion, metrics, OpenAPI, health) on
`edge.admin_listen`; it shares the public application's objects and owns none of them, so the
public application's cleanup contexts start and stop everything once, except the thread each
application's insertion uses for large markups (see `insert.insertion_thread`), which is its own.

The composition root (`clickbus.runtime.edge_app`) builds the log, the metrics and the notifier and hands
them in; the edge imports nothing of the root.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from clickbus.compat.aiohttp import FrontedApplication
from clickbus.config import Config
from clickbus.console import routes as console
from clickbus.creative import Inserter
from clickbus.edge import (
    admin_guard,
    beacons,
    health,
    insert,
    openapi,
    pixel,
    prometheus,
    redirect,
    reports,
    server_clicks,
)
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
from clickbus.edge.thin import Thin
from clickbus.keystore import load_keyring
from clickbus.log import Log, open_log
from clickbus.log.lifecycle import flushing, started
from clickbus.log.metered import MeteredLog
from clickbus.metrics import Metrics, default_metrics
from clickbus.private_files import make_dirs
from clickbus.tokens import Keyring

if TYPE_CHECKING:
    from clickbus.notifier import Notifier
    from clickbus.reports.service import Reporter

BUCKETS_FILE = "rate-buckets"


def create_app(
    config: Config,
    *,
    log: Log | None = None,
    keyring: Keyring | None = None,
    metrics: Metrics | None = None,
    notifier: Notifier | None = None,
    reporter: Reporter | None = None,
    thin: bool = True,
) -> web.Application:
    """Build the public edge for `config`; `log`, `keyring` and `metrics` default to what the configuration names.

    The hot routes take the thin path (`clickbus.edge.thin`) unless `thin` is False (for comparisons: both answer
    alike). A `log` not yet metered is metered here. A `notifier` (built on the same log) runs for the application's
    life, started and stopped by it, and so does a `reporter` (reporting runs where the notifier runs).
    """
    app = FrontedApplication(client_max_size=config.edge.max_body_bytes)
    app[CONFIG] = config
    app[KEYRING] = keyring if keyring is not None else load_keyring(config)
    app[ADDRESS_SECRET] = app[KEYRING].derive(b"client address")
    app[INSERTER] = Inserter(
        app[KEYRING],
        config.edge.public_url,
        ttl_s=config.tokens.ttl_s,
        allow_private_landings=config.edge.allow_private_landings,
    )
    app[METRICS] = metrics if metrics is not None else default_metrics()
    inner = log if log is not None else open_log(config)
    app[LOG] = inner if isinstance(inner, MeteredLog) else MeteredLog(inner, app[METRICS])
    app[DRAINING] = asyncio.Event()
    app[API_KEYS] = ApiKeys(config.api_keys)
    app[RATE_LIMITER] = RateLimiter(config.api_keys)
    app[INSERT_KEYS] = ApiKeys(config.insert_keys)
    # first in, last out: the final flush follows the log's stop
    app.cleanup_ctx.append(_during(lambda: flushing(app[METRICS], app[LOG])))
    app.cleanup_ctx.append(_during(lambda: started(app[LOG], config.edge.shutdown_timeout_s)))
    app.cleanup_ctx.append(_sharing_buckets)
    if notifier is not None:
        app.cleanup_ctx.append(_notifying(notifier, config.edge.shutdown_timeout_s))
    if reporter is not None:
        app.cleanup_ctx.append(_reporting(reporter, config.edge.shutdown_timeout_s))
    for module in (health, redirect, beacons, pixel, server_clicks):
        app.add_routes(module.routes)
    if app[INSERT_KEYS]:
        app.add_routes(insert.keyed_routes)
        app.cleanup_ctx.append(insert.insertion_thread)
    app.on_response_prepare.append(drop_server_header)
    if thin:
        app.front = Thin(app)
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
    admin.add_routes(health.admin_routes)
    for module in (insert, prometheus, openapi, reports):
        admin.add_routes(module.routes)
    admin.cleanup_ctx.append(reports.reading)
    console.install(admin, edge[CONFIG], edge[METRICS])
    admin.cleanup_ctx.append(insert.insertion_thread)  # each listener its own: no stop order between the two
    admin.on_response_prepare.append(drop_server_header)
    admin.on_response_prepare.append(admin_guard.security_headers)
    return admin


async def _sharing_buckets(app: web.Application) -> AsyncIterator[None]:
    """The API keys' rate limits hold for every worker of the host: their buckets are in one file (see buckets)."""
    limiter = app[RATE_LIMITER]
    if limiter:
        data_dir = app[CONFIG].data_dir
        make_dirs(data_dir)
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


def _notifying(notifier: Notifier, stop_timeout_s: float) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        # Joining a Kafka consumer group can take several session timeouts, and a start that fails (a
        # read-only data_dir) is tried again: serve clicks meanwhile.
        starting = asyncio.create_task(notifier.start_retrying(), name="clickbus-notifier-start")
        yield
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starting
        await notifier.stop(stop_timeout_s)

    return ctx


def _reporting(reporter: Reporter, stop_timeout_s: float) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        await reporter.start()  # in the background: a store that is down never holds up the edge
        yield
        await reporter.stop(stop_timeout_s)

    return ctx
