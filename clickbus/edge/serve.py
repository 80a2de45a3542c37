"""Serving the edge in one process: accept on both listeners, run until a signal, drain within a limit.

The listening sockets come from `clickbus.edge.sockets`: bound here, or inherited from the
supervisor of `clickbus run --workers N`, which binds them once, a set for each worker.

The first SIGTERM or SIGINT turns `/readyz` to 503 at once and stops accepting connections;
requests in flight finish, then the application's cleanup flushes and stops the log, all
within `edge.shutdown_timeout_s`. A second signal exits at once: every acknowledged click is
already durable, so nothing acknowledged is lost either way.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable, Sequence

from aiohttp import web

from clickbus.config import Config
from clickbus.edge.appkeys import DRAINING
from clickbus.edge.connections import bound, listen
from clickbus.edge.sockets import Listeners, open_listeners

logger = logging.getLogger(__name__)

EXIT_FORCED = 1
SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Of the shutdown limit, the share given to requests in flight; the log's flush gets the rest.
IN_FLIGHT_SHARE = 0.6


class Shutdown:
    """Turns the first stop signal into draining, and the second into an immediate exit."""

    def __init__(self, draining: asyncio.Event) -> None:
        self.draining = draining
        self.requested = asyncio.Event()

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        for signum in SIGNALS:
            loop.add_signal_handler(signum, self.signal, signum)

    def signal(self, signum: int) -> None:
        if self.requested.is_set():
            logger.warning("second %s: exiting now", signal.Signals(signum).name)
            logging.shutdown()
            os._exit(EXIT_FORCED)
        logger.info("%s: draining", signal.Signals(signum).name)
        self.draining.set()
        self.requested.set()


def make_runner(app: web.Application, config: Config) -> web.AppRunner:
    """A runner for `app` with the in-flight share of the shutdown limit (connections come from `listen`)."""
    return web.AppRunner(app, shutdown_timeout=config.edge.shutdown_timeout_s * IN_FLIGHT_SHARE)


async def serve(
    public: web.Application,
    admin: web.Application,
    config: Config,
    *,
    announce: bool = False,
    listeners: Listeners | None = None,
    on_listening: Callable[[], None] | None = None,
) -> None:
    """Serve `public` on `edge.listen` and `admin` on `edge.admin_listen` until a stop signal, then drain.

    `listeners` are the sockets already bound for them (by default both are bound here, or
    `CannotStart` says why not). `announce` also prints the listening line on stdout, as
    `clickbus run` always has; `on_listening` is called once both listen.
    """
    if listeners is None:
        listeners = open_listeners(config.edge)[0]
    shutdown = Shutdown(public[DRAINING])
    shutdown.install(asyncio.get_running_loop())
    runners: list[web.AppRunner] = []
    servers: list[asyncio.Server] = []
    try:
        for app in (public, admin):  # the public app first: its cleanup context starts the log
            runners.append(make_runner(app, config))
            await runners[-1].setup()
        for runner, sockets in ((runners[0], listeners.public), (runners[1], listeners.admin)):
            servers += [await listen(runner, sock, config.edge) for sock in sockets]
        public_at, admin_at = bound(servers[0]), bound(servers[len(listeners.public)])
        public_url = config.edge.public_url
        extra = {"address": public_at, "admin_address": admin_at, "public_url": public_url}
        logger.info("listening", extra=extra)
        if announce:
            print(f"clickbus listening on {public_at} (admin {admin_at}), public URL {public_url}", flush=True)
        if on_listening is not None:
            on_listening()
        await shutdown.requested.wait()
    finally:
        for server in servers:
            server.close()
        await drain(runners, config.edge.shutdown_timeout_s)


async def drain(runners: Sequence[web.AppRunner], limit_s: float) -> None:
    """Stop accepting, let requests in flight finish, run the apps' cleanup: at most `limit_s` in all."""
    try:
        async with asyncio.timeout(limit_s):
            await asyncio.gather(*(runner.cleanup() for runner in runners))
    except TimeoutError:
        logger.error("shutdown took longer than %.1fs; stopping anyway", limit_s)
    else:
        logger.info("stopped")
