"""The composition root: every role and command builds its log, metrics and notifier here.

The edge (`edge_app`), `clickbus notifier`, `clickbus dlq` and `clickbus tail` all get the configured
log adapter wrapped in `MeteredLog`, the process's metrics, and stop limits from configuration; long-running
commands wait for SIGINT/SIGTERM through `stop_signal`, and run on `new_loop` (uvloop where it builds).
The root imports the roles; no role imports the root (`tests/test_imports.py`): the edge gets its log,
metrics and notifier handed to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from clickbus import heap
from clickbus.config import Config
from clickbus.log import Log, open_log
from clickbus.log.lifecycle import flushing, started
from clickbus.log.metered import MeteredLog
from clickbus.metrics import (
    Metrics,
    default_metrics,
    mark_process_dead,
    multiprocess_dir,
    private_dir,
    use_multiprocess_dir,
    use_private_dir,
)

if TYPE_CHECKING:
    from aiohttp import web

    from clickbus.edge.sockets import Listeners
    from clickbus.notifier import Notifier
    from clickbus.reports.service import Reporter
    from clickbus.tokens import Keyring

__all__ = [
    "edge_app",
    "flushing",
    "heap",
    "metered_log",
    "new_loop",
    "notifier",
    "reporter",
    "run",
    "serve_edge",
    "started",
    "stop_signal",
]

T = TypeVar("T")
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def share_metrics(config: Config, *, first: bool) -> None:
    """Write this process's samples where every process of the service reads them (`first` makes it).

    In memory, never under `config.data_dir`: a full data disk must not SIGBUS the edge. The first
    process (`clickbus run`) owns the directory; its children find it in the environment it passes on.
    """
    if first:
        use_private_dir()
    else:
        use_multiprocess_dir(multiprocess_dir() or private_dir(os.getppid()), clean=False)


def serve_edge(config: Config, *, announce: bool, notifier: bool, listeners: Listeners | None = None) -> int:
    """Serve the edge (with the notifier inside when `notifier`) until a stop signal; the exit status.

    `listeners`: the sockets bound for it (see `clickbus.edge.sockets`); by default it binds its own.
    """
    from clickbus.edge import create_admin_app
    from clickbus.edge.serve import serve
    from clickbus.supervisor import tell_listening

    try:
        public = edge_app(config, with_notifier=notifier)
        admin = create_admin_app(public)

        def listening() -> None:
            heap.settle()  # started: what start-up made is kept for good
            tell_listening()

        run(serve(public, admin, config, announce=announce, listeners=listeners, on_listening=listening))
    finally:
        mark_process_dead(os.getpid())
    return 0


def edge_app(
    config: Config,
    *,
    with_notifier: bool,
    log: Log | None = None,
    keyring: Keyring | None = None,
    metrics: Metrics | None = None,
) -> web.Application:
    """The public edge application on the configured (or given) log and metrics, with the notifier on the same log."""
    from clickbus.edge import create_app

    metrics = metrics if metrics is not None else default_metrics()
    metered = metered_log(config, metrics, log)
    inside = notifier(config, metered, metrics) if with_notifier else None
    counting = (
        reporter(config, metered) if with_notifier and config.reports.enabled else None
    )  # where the notifier runs
    return create_app(config, log=metered, keyring=keyring, metrics=metrics, notifier=inside, reporter=counting)


def metered_log(config: Config, metrics: Metrics, log: Log | None = None) -> MeteredLog:
    """`log` (by default the adapter the configuration selects, not yet started), counted and timed."""
    return MeteredLog(log if log is not None else open_log(config), metrics)


def notifier(config: Config, log: Log, metrics: Metrics) -> Notifier:
    """The notifier on `log`; a bad member secret fails here, before anything starts."""
    from clickbus.notifier import Notifier  # its HTTP client and checks load only where it runs

    return Notifier(config, log, metrics)


def reporter(config: Config, log: Log) -> Reporter:
    """The reporter on `log`, counting into the configured store."""
    from clickbus.reports.service import Reporter

    return Reporter(config, log)


@contextlib.asynccontextmanager
async def stop_signal() -> AsyncIterator[asyncio.Event]:
    """An event set by the first SIGINT or SIGTERM while the block runs; the handlers before it come back after."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    before = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    try:
        yield stop
    finally:
        for signum, handler in before.items():
            loop.remove_signal_handler(signum)
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def new_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop, or asyncio's where uvloop is missing."""
    try:
        import uvloop
    except ImportError:  # uvloop does not build on every platform; asyncio's loop is correct, only slower
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` to completion on a fresh `new_loop`."""
    with asyncio.Runner(loop_factory=new_loop) as runner:
        return runner.run(main)
