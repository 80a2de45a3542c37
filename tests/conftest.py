"""Shared fixtures: a configuration on a temporary data directory, a keyring, its log, the edge app on them."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pytest_aiohttp import AiohttpClient

from clickbus.config import Config
from clickbus.edge import create_app
from clickbus.log import EmbeddedLog, open_log
from clickbus.tokens import Keyring, new_key
from tests.hostile.harness import SUMMARY, SUMMARY_DIR_ENV
from tests.support.configs import build_config
from tests.support.edgeapp import EdgeClient, admin_client


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return build_config(tmp_path, edge={"public_url": "http://edge.test"})


@pytest.fixture
def keyring() -> Keyring:
    return Keyring({"k1": new_key()}, "k1")


@pytest.fixture
def log(config: Config) -> EmbeddedLog:
    """The embedded log `config` names (the edge starts it), for reading back what the edge wrote."""
    opened = open_log(config)
    assert isinstance(opened, EmbeddedLog)
    return opened


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, config: Config, keyring: Keyring, log: EmbeddedLog) -> EdgeClient:
    """The edge on `config`, `keyring` and `log`, through real HTTP."""
    return await aiohttp_client(create_app(config, keyring=keyring, log=log))


@pytest.fixture
async def admin(client: EdgeClient) -> AsyncIterator[EdgeClient]:
    """The internal listener (insertion, metrics, OpenAPI) of the same edge as `client`, through real HTTP."""
    async with admin_client(client.app) as served:
        yield served


def pytest_configure(config: pytest.Config) -> None:
    """Before `pytest -n N` starts its workers: a folder where they leave the hostile suite's lines."""
    if "PYTEST_XDIST_WORKER" not in os.environ and SUMMARY_DIR_ENV not in os.environ:
        os.environ[SUMMARY_DIR_ENV] = tempfile.mkdtemp(prefix="clickbus-hostile-")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The hostile suite's counts, one line per category, whether or not output was captured (and on any worker)."""
    lines = list(SUMMARY)
    if folder := os.environ.get(SUMMARY_DIR_ENV):
        for found in sorted(Path(folder).glob("hostile-*.txt")):
            lines += found.read_text().splitlines()
    if lines:
        terminalreporter.section("hostile suite")
        for line in sorted(lines):
            terminalreporter.write_line(line)


def pytest_unconfigure(config: pytest.Config) -> None:
    if "PYTEST_XDIST_WORKER" not in os.environ and (folder := os.environ.pop(SUMMARY_DIR_ENV, None)):
        shutil.rmtree(folder, ignore_errors=True)
