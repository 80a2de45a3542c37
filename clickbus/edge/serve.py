"""Serving the edge in one process: bind with SO_REUSEPORT, run until a signal, drain within a limit.

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

from aiohttp import web

from clickbus.config import Config
from clickbus.edge.appkeys import DRAINING
from clickbus.logging_setup import JsonAccessLogger, access_logger

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
    """A runner with the JSON access log (when `edge.access_log`) and the in-flight share of the shutdown limit."""
    return web.AppRunner(
        app,
        access_log_class=JsonAccessLogger,
        access_log=access_logger() if config.edge.access_log else None,
        shutdown_timeout=config.edge.shutdown_timeout_s * IN_FLIGHT_SHARE,
    )


async def serve(app: web.Application, config: Config, *, announce: bool = False) -> None:
    """Serve `app` on `edge.listen` (shared with sibling workers) until a stop signal, then drain.

    `announce` also prints the listening line on stdout, as `clickbus run` always has.
    """
    shutdown = Shutdown(app[DRAINING])
    shutdown.install(asyncio.get_running_loop())
    runner = make_runner(app, config)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.edge.listen.host, config.edge.listen.port, reuse_port=True)
        await site.start()
        logger.info("listening", extra={"address": _address(runner), "public_url": config.edge.public_url})
        if announce:
            print(f"clickbus listening on {_address(runner)}, public URL {config.edge.public_url}", flush=True)
        await shutdown.requested.wait()
    finally:
        await drain(runner, config.edge.shutdown_timeout_s)


async def drain(runner: web.AppRunner, limit_s: float) -> None:
    """Stop accepting, let requests in flight finish, run the app's cleanup: at most `limit_s` in all."""
    try:
        async with asyncio.timeout(limit_s):
            await runner.cleanup()
    except TimeoutError:
        logger.error("shutdown took longer than %.1fs; stopping anyway", limit_s)
    else:
        logger.info("stopped")


def _address(runner: web.AppRunner) -> str:
    host, port = runner.addresses[0][:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
