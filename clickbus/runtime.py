"""The composition root: every role and command builds its log, metrics and notifier here.

The edge (`create_app`), `clickbus notifier`, `clickbus dlq` and `clickbus tail` all get the configured
log adapter wrapped in `MeteredLog`, the process's metrics, and stop limits from configuration; long-running
commands wait for SIGINT/SIGTERM through `stop_signal`, and run on `new_loop` (uvloop where it builds).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from clickbus.config import Config
from clickbus.log import Log, open_log
from clickbus.log.metered import MeteredLog
from clickbus.metrics import (
    FLUSH_EVERY_S,
    Metrics,
    mark_process_dead,
    multiprocess_dir,
    private_dir,
    use_multiprocess_dir,
    use_private_dir,
)

if TYPE_CHECKING:
    from clickbus.notifier import Notifier

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


def serve_edge(config: Config, *, announce: bool, notifier: bool) -> int:
    """Serve the edge (with the notifier inside when `notifier`) until a stop signal; the exit status."""
    from clickbus.edge import create_admin_app, create_app
    from clickbus.edge.serve import serve

    try:
        public = create_app(config, notifier=notifier)
        run(serve(public, create_admin_app(public), config, announce=announce))
    finally:
        mark_process_dead(os.getpid())
    return 0


def metered_log(config: Config, metrics: Metrics, log: Log | None = None) -> MeteredLog:
    """`log` (by default the adapter the configuration selects, not yet started), counted and timed."""
    return MeteredLog(log if log is not None else open_log(config), metrics)


def notifier(config: Config, log: Log, metrics: Metrics) -> Notifier:
    """The notifier on `log`; a bad member secret fails here, before anything starts."""
    from clickbus.notifier import Notifier  # its HTTP client and checks load only where it runs

    return Notifier(config, log, metrics)


@contextlib.asynccontextmanager
async def started(log: Log, stop_timeout_s: float) -> AsyncIterator[Log]:
    """`log` started for the block, and stopped within `stop_timeout_s` after it, however it ends."""
    await log.start()
    try:
        yield log
    finally:
        await log.stop(stop_timeout_s)


@contextlib.asynccontextmanager
async def flushing(metrics: Metrics, log: Log) -> AsyncIterator[None]:
    """Write the metrics summed in this process every second, idle or not, and once more at the end."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY_S)
            if isinstance(log, MeteredLog):
                log.report()
            metrics.log_ready(log.health.ready)
            metrics.flush()

    task = asyncio.create_task(loop(), name="clickbus-metrics-flush")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        metrics.flush()


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
