"""A full data disk: the edge answers `503` with `Retry-After`, keeps serving `/healthz`, and recovers.

For real: `data_dir` on a 2 MiB tmpfs filled to the last byte under a running `clickbus run`. Before
the metrics' sample files (sparse memory maps) moved out of `data_dir`, the first new series on the
full disk killed the edge with SIGBUS. Needs root (to mount); skipped with the reason otherwise.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from tests.hostile.harness import AD, CAMPAIGN, Tally, click_path, fetch, insert_url, session, start_service
from tests.support.mounts import fill
from tests.support.service import Service
from tests.support.waiting import eventually_async

SIZE = "2m"
SERVER_CLICK = "/api/v1/campaigns/click"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """`tmp_path/var` (the service's data_dir) on a tmpfs of `SIZE`."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    var = tmp_path / "var"
    var.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(var)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield var
    finally:
        subprocess.run(["umount", "-l", str(var)], check=False)


async def test_full_data_disk_answers_503_keeps_health_and_recovers(small_disk: Path, tmp_path: Path) -> None:
    service: Service = await asyncio.to_thread(start_service, tmp_path)
    tally = Tally("disk full", documented_5xx=frozenset({503}))
    try:
        async with session() as client:
            assert (await fetch(client, "GET", service.url + click_path(service))).status == 302
            filler = fill(small_disk)
            refused = 0
            for i in range(60):  # new records, and new metric series (503s, append errors)
                path = click_path(service, replace(AD, auction_id_64=1000 + i))
                answer = tally.count(await fetch(client, "GET", service.url + path), f"click {i}", (302, 503))
                refused += answer.status == 503
                assert answer.status != 503 or answer.retry_after == "1"
                tally.count(await fetch(client, "GET", service.url + "/healthz"), "/healthz", expected=(200,))
            body = {"markup": "<a href='${CLICK_URL}'>x</a>", "landing_url": "https://shop.example/"}
            body["auction"] = {"member_id": 13, "auction_id_64": 7}  # type: ignore[assignment]
            tally.count(await fetch(client, "POST", insert_url(service), json=body), "insert", expected=(200,))
            assert service.process is not None and service.process.poll() is None, service.logs()[-2000:]
            assert refused > 0  # the disk really was full for the log
            filler.unlink()

            async def recovered() -> bool:
                return (await fetch(client, "GET", service.url + click_path(service))).status == 302

            await eventually_async(recovered, timeout_s=15)
        tally.report()
    finally:
        assert service.stop() == 0, service.logs()[-2000:]


async def test_readyz_tells_strangers_only_unavailable_and_recovers_once_the_disk_takes_writes(
    small_disk: Path, tmp_path: Path
) -> None:
    """Before: the public /readyz showed the errno text, and stayed 503 until the topic that failed was written."""
    service: Service = await asyncio.to_thread(start_service, tmp_path)
    try:
        async with session() as client:
            assert (await fetch(client, "GET", service.url + click_path(service))).status == 302
            filler = fill(small_disk)

            async def refused() -> bool:
                path = click_path(service, replace(AD, auction_id_64=int(time.time() * 1000)))
                return (await fetch(client, "GET", service.url + path)).status == 503

            await eventually_async(refused, timeout_s=15)
            public = await fetch(client, "GET", service.url + "/readyz")
            assert (public.status, orjson.loads(public.body)) == (503, {"status": "unavailable"})
            internal = await fetch(client, "GET", service.admin_url + "/readyz")
            assert internal.status == 503 and "No space left" in orjson.loads(internal.body)["reason"]
            filler.unlink()

            async def ready() -> bool:  # no click meanwhile: the log's probe sees the disk take writes again
                return (await fetch(client, "GET", service.url + "/readyz")).status == 200

            await eventually_async(ready, timeout_s=15)
    finally:
        assert service.stop() == 0, service.logs()[-2000:]


SLOW_KEY = "cbk_hostile-suite-one-click-per-100-s"
SLOW_TABLE = f'[api_keys.slow]\nsha256 = "{hashlib.sha256(SLOW_KEY.encode()).hexdigest()}"\nrate_per_s = 0.01\n'


async def test_a_server_click_the_log_refuses_keeps_its_rate_limit_token(small_disk: Path, tmp_path: Path) -> None:
    """A key with one token per 100 s: its clicks refused with `503` while the disk is full leave that token.

    Before: each `503` spent it, so the first click after the disk recovered was `429` for 100 s.
    """
    service: Service = await asyncio.to_thread(start_service, tmp_path, tables=SLOW_TABLE)
    tally = Tally("server clicks on a full disk (rate limit)", documented_5xx=frozenset({503}))
    click = {"campaignId": CAMPAIGN, "placement": "header_banner"}
    auth = {"Authorization": f"Bearer {SLOW_KEY}"}
    try:
        async with session() as client:
            filler = fill(small_disk)

            async def log_refuses() -> bool:
                path = click_path(service, replace(AD, auction_id_64=int(time.time() * 1000)))
                return (await fetch(client, "GET", service.url + path)).status == 503

            await eventually_async(log_refuses, timeout_s=15)
            for n in range(3):
                url = service.url + SERVER_CLICK
                answer = tally.count(await fetch(client, "POST", url, json=click, headers=auth), f"refused {n}", (503,))
                assert answer.retry_after == "1"
            filler.unlink()

            async def recorded() -> int | None:
                answer = await fetch(client, "POST", service.url + SERVER_CLICK, json=click, headers=auth)
                return answer.status if answer.status != 503 else None

            assert await eventually_async(recorded, timeout_s=15) == 200  # not 429: the token was given back
            spent = tally.count(await fetch(client, "POST", url, json=click, headers=auth), "the next", (429,))
            assert spent.retry_after is not None and int(spent.retry_after) > 1  # and now it is spent
        tally.report()
    finally:
        assert service.stop() == 0, service.logs()[-2000:]
