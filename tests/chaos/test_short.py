"""The short version of every chaos scenario (`make chaos` runs the full ones): no click lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.accounting import details, table
from tests.chaos.params import SHORT
from tests.chaos.scenarios import NEEDS_MOUNTS, SCENARIOS
from tests.support.mounts import mount_skip_reason


@pytest.mark.slow
@pytest.mark.chaos
@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_no_click_is_lost(name: str, tmp_path: Path) -> None:
    if name in NEEDS_MOUNTS and (why := mount_skip_reason()) is not None:
        pytest.skip(why)
    figures = await SCENARIOS[name](tmp_path, SHORT)
    print("\n" + table([figures]) + "\n" + details(figures))
    assert figures.passed, details(figures)
    assert figures.recorded == figures.answered
