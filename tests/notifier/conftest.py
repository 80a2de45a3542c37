"""Fixtures for the notifier tests: a started log per backend, bidder stubs, running notifiers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

import pytest

from clickbus.config import Config
from clickbus.log import open_log
from clickbus.log.embedded import EmbeddedLog
from clickbus.log.port import Log
from clickbus.notifier import Notifier
from tests.support.bidder import BidderStub
from tests.support.configs import kafka_config
from tests.support.kafka_broker import TansuBroker, kafka_broker

__all__ = ["kafka_broker"]

LogFactory = Callable[[Path], Awaitable[Log]]


async def _embedded(path: Path) -> Log:
    log = EmbeddedLog(path / "log")
    await log.start()
    return log


def _kafka(broker: TansuBroker) -> LogFactory:
    async def open_kafka(path: Path) -> Log:
        # a topic prefix per log: every test reads its topics from the beginning
        log = open_log(kafka_config(path, broker.bootstrap))
        await log.start()
        return log

    return open_kafka


BACKENDS = ("embedded", "kafka")


@pytest.fixture(params=BACKENDS)
def log_factory(request: pytest.FixtureRequest) -> LogFactory:
    """Opens a started log of one backend on a directory (every test runs once per backend)."""
    if request.param == "kafka":
        return _kafka(request.getfixturevalue("kafka_broker"))
    return _embedded


@pytest.fixture
async def log(log_factory: LogFactory, tmp_path: Path) -> AsyncIterator[Log]:
    opened = await log_factory(tmp_path)
    yield opened
    await opened.stop(5.0)


class StartStub(Protocol):
    """The `stubs` fixture: starts a bidder stub with these `BidderStub` settings."""

    async def __call__(
        self,
        *,
        default: str = ...,
        script: list[str] = ...,
        retry_after: str = ...,
        click_response: bytes = ...,
        delay_s: float = ...,
    ) -> BidderStub: ...


@pytest.fixture
async def stubs() -> AsyncIterator[StartStub]:
    """Start bidder stubs on demand: `await stubs(default="500", script=[...])`."""
    started: list[BidderStub] = []

    async def start(**settings: Any) -> BidderStub:
        stub = BidderStub(**settings)
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
