"""One `clickbus run` for the whole hostile suite (each test module that needs another starts its own)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hostile.harness import SUMMARY, SUMMARY_DIR_ENV, serving
from tests.support.service import Service


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    yield from serving(tmp_path_factory, "hostile")


def pytest_sessionfinish(session: pytest.Session) -> None:
    """A worker of `pytest -n N` leaves its categories' lines for the summary (tests/conftest.py prints them)."""
    worker, folder = os.environ.get("PYTEST_XDIST_WORKER"), os.environ.get(SUMMARY_DIR_ENV)
    if SUMMARY and worker and folder:
        (Path(folder) / f"hostile-{worker}.txt").write_text("\n".join(SUMMARY) + "\n")
