"""The shared `rate-buckets` file cut short while server clicks come in: every click is still answered, never `5xx`.

The file is the API keys' token buckets, shared by the workers of a host (`clickbus.edge.buckets`). A
file cut to any length (a truncating hand, a restore from a backup) is written out again, as at start.
"""

from __future__ import annotations

import asyncio
import functools
import os
from pathlib import Path

import orjson

from clickbus.edge.app import BUCKETS_FILE
from clickbus.edge.buckets import SLOT, FileBuckets
from tests.hostile.harness import API_KEY, CAMPAIGN, Tally, fetch, run_all, session
from tests.support.service import Service

LENGTHS = (0, 1, SLOT.size - 1, SLOT.size // 2)
CLICKS_PER_CUT = 8


def cut(path: Path, length: int) -> None:
    """Cut the file to `length` bytes in place, as `truncate -s` does (the edge keeps its descriptor)."""
    os.truncate(path, length)


async def test_server_clicks_survive_a_cut_buckets_file(service: Service) -> None:
    tally = Tally("rate-buckets file cut short")
    path = service.config.data_dir / BUCKETS_FILE
    assert path.exists()
    body = orjson.dumps({"campaignId": CAMPAIGN, "placement": "header_banner"})
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    async with session() as client:

        async def click(what: str) -> None:
            answer = await fetch(client, "POST", f"{service.url}/api/v1/campaigns/click", data=body, headers=headers)
            tally.count(answer, what, expected=(200,))

        for length in LENGTHS:
            cut(path, length)
            await run_all(
                functools.partial(click, f"after a cut to {length} bytes, click {n}") for n in range(CLICKS_PER_CUT)
            )
        # and cuts while clicks are in flight
        clicking = asyncio.create_task(run_all(functools.partial(click, f"during cuts, click {n}") for n in range(64)))
        while not clicking.done():
            cut(path, 0)
            await asyncio.sleep(0.001)
        await clicking
        await click("after the cuts")
    tally.report()
    assert path.stat().st_size >= SLOT.size  # written out again


def test_a_cut_file_is_written_out_again_and_starts_from_a_burst(tmp_path: Path) -> None:
    buckets = FileBuckets(tmp_path / BUCKETS_FILE, slots=2)
    try:
        assert buckets.take(1, 100.0, rate=0.01, burst=1.0).allowed
        assert not buckets.take(1, 100.0, rate=0.01, burst=1.0).allowed
        os.truncate(tmp_path / BUCKETS_FILE, SLOT.size + 3)  # slot 0 whole, slot 1 cut
        assert buckets.take(1, 100.0, rate=0.01, burst=1.0).allowed  # as after a restart: a burst
        assert (tmp_path / BUCKETS_FILE).stat().st_size == 2 * SLOT.size
        buckets.give_back(0, burst=1.0)
        os.truncate(tmp_path / BUCKETS_FILE, 0)
        buckets.give_back(1, burst=1.0)  # giving back into a cut file rebuilds it too
        assert (tmp_path / BUCKETS_FILE).stat().st_size == 2 * SLOT.size
    finally:
        buckets.close()
