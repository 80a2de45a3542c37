"""One `clickbus run` for the whole hostile suite (each test module that needs another starts its own)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.hostile.harness import SUMMARY, serving
from tests.support.service import Service


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    yield from serving(tmp_path_factory, "hostile")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The hostile suite's counts, one line per category, whether or not output was captured."""
    if SUMMARY:
        terminalreporter.section("hostile suite")
        for line in SUMMARY:
            terminalreporter.write_line(line)
