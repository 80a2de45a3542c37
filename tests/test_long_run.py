"""`make run` as an operator runs it: one process (edge and notifier) on the defaults, left running past every
periodic timer it has, then SIGTERM: exit 0, no traceback, no error line.

Before #16 the retention task died at its first run (no closed segment yet on 64 MB segments) and SIGTERM
then printed its ValueError and exited 1. Retention's period is the one default shortened here (60 s ->
1 s), so that the test outlives it several times and the log's idle writability probe once.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from clickbus.creative import Inserter
from clickbus.keystore import load_keyring
from clickbus.log.embedded import PROBE_IDLE_S
from clickbus.tokens import AdContext
from tests.support.service import Service

RETENTION_CHECK_S = 1.0
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"


async def click(service: Service, auction: int) -> int:
    inserter = Inserter(load_keyring(service.config), service.url, ttl_s=3600)
    url = inserter.click_url(AdContext(member_id=13, auction_id_64=auction, landing_url="https://shop.example/"))
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, allow_redirects=False, headers={"User-Agent": UA}) as response,
    ):
        return response.status


@pytest.mark.slow
async def test_the_default_process_outlives_its_timers_and_stops_cleanly(tmp_path: Path) -> None:
    extra = f"[log.embedded]\nretention_check_s = {RETENTION_CHECK_S}\n"
    service = await asyncio.to_thread(Service(tmp_path, notifier=True, extra=extra).start)
    try:
        assert await click(service, 1) == 302
        await asyncio.sleep(max(3 * RETENTION_CHECK_S, PROBE_IDLE_S) + 1)
        assert service.process is not None and service.process.poll() is None
        assert await click(service, 2) == 302
    finally:
        code = await asyncio.to_thread(service.stop)
    logs = service.logs()
    assert code == 0, logs[-3000:]
    assert "Traceback" not in logs and '"level":"error"' not in logs, logs[-3000:]
