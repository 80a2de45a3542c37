"""The report stores under test: every contract test runs on each adapter."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from clickbus.reports.port import Store
from clickbus.reports.sqlite import SQLiteStore


@pytest.fixture(params=["sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A started, empty store of each kind."""
    opened: Store = SQLiteStore(tmp_path / "reports.sqlite3")
    await opened.start()
    try:
        yield opened
    finally:
        await opened.stop()
