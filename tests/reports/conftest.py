"""The report stores under test: every contract test runs on each adapter."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from clickbus.reports.port import Store
from clickbus.reports.sqlite import SQLiteStore
from tests.support.postgres import PostgresCluster, postgres, postgres_store

__all__ = ["postgres"]


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A started, empty store of each kind."""
    opened: Store
    if request.param == "sqlite":
        opened = SQLiteStore(tmp_path / "reports.sqlite3")
    else:
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        opened = await postgres_store(cluster)
    await opened.start()
    try:
        yield opened
    finally:
        await opened.stop()
