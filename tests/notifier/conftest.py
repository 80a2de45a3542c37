"""Fixtures for the notifier tests: a started log per backend, bidder stubs, running notifiers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest

from clickbus.config import Config
from clickbus.log.port import Log
from clickbus.log.sqlite import EmbeddedLog
from clickbus.notifier import Notifier
from tests.bidder import BidderStub

LogFactory = Callable[[Path], Awaitable[Log]]


async def _embedded(path: Path) -> Log:
    log = EmbeddedLog(path / "log.sqlite3")
    await log.start()
    return log


# The lead adds `"kafka": _kafka` here once the Kafka adapter and its broker fixture are merged.
BACKENDS: dict[str, LogFactory] = {"embedded": _embedded}


@pytest.fixture(params=sorted(BACKENDS))
def log_factory(request: pytest.FixtureRequest) -> LogFactory:
    """Opens a started log of one backend on a directory (every test runs once per backend)."""
    factory: LogFactory = BACKENDS[request.param]
    return factory


@pytest.fixture
async def log(log_factory: LogFactory, tmp_path: Path) -> AsyncIterator[Log]:
    opened = await log_factory(tmp_path)
    yield opened
    await opened.stop(5.0)


@pytest.fixture
async def stubs() -> AsyncIterator[Callable[..., Awaitable[BidderStub]]]:
    """Start bidder stubs on demand: `await stubs(default="500", script=[...])`."""
    started: list[BidderStub] = []

    async def start(**kwargs: object) -> BidderStub:
        stub = BidderStub(**kwargs)  # type: ignore[arg-type]
        await stub.start()
        started.append(stub)
        return stub

    yield start
    for stub in started:
        await stub.stop()


RunNotifier = Callable[[Config], AbstractAsyncContextManager[Notifier]]


@pytest.fixture
def running(log: Log) -> RunNotifier:
    """`async with running(config) as notifier:` runs a notifier on the test's log."""

    @asynccontextmanager
    async def run(config: Config) -> AsyncIterator[Notifier]:
        notifier = Notifier(config, log)
        await notifier.start()
        try:
            yield notifier
        finally:
            await notifier.stop(5.0)

    return run
