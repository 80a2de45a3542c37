"""A notifier that cannot start (a read-only data directory) is tried again with backoff, and delivers once it can."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pytest_aiohttp import AiohttpClient

from clickbus.config import Config
from clickbus.creative import Inserter
from clickbus.edge.appkeys import KEYRING
from clickbus.log import open_log
from clickbus.log.port import Topic
from clickbus.metrics import create_metrics
from clickbus.runtime import edge_app
from clickbus.tokens import AdContext
from tests.notifier import factory as f
from tests.notifier.conftest import StartStub
from tests.support.configs import notifier_config
from tests.support.edgeapp import admin_client
from tests.support.mounts import mount_skip_reason, read_only
from tests.support.waiting import eventually, eventually_async

pytestmark = pytest.mark.skipif((reason := mount_skip_reason()) is not None, reason=reason or "")


def _failed_starts(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "background task notifier-start failed" in r.getMessage()]


async def _seed(config: Config) -> None:
    """A record in the clicks topic, as on any data_dir that has served: the notifier has a partition to take."""
    log = open_log(config)
    await log.start()
    await log.append(Topic.CLICKS, b"seed", b"not a click record")  # judged malformed, never delivered
    await log.stop(5)


async def test_a_notifier_start_refused_by_a_read_only_data_dir_is_retried_until_it_delivers(
    aiohttp_client: AiohttpClient, stubs: StartStub, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stub = await stubs()
    data_dir = tmp_path / "var"
    config = notifier_config(data_dir, {13: {"click_uri": stub.url}})
    app = edge_app(config, with_notifier=True, metrics=create_metrics())  # creates the signing key while it can
    ad = AdContext(member_id=13, auction_id_64=5, user_id_64=9, landing_url="https://advertiser.example/x")
    path = Inserter(app[KEYRING], config.edge.public_url, ttl_s=3600).click_url(ad).removeprefix(config.edge.public_url)
    await _seed(config)
    with read_only(data_dir) as switch:
        client = await aiohttp_client(app)
        await eventually(lambda: len(_failed_starts(caplog)) >= 2)  # before: said once, never tried again
        assert "Read-only file system" in _failed_starts(caplog)[0].getMessage()
        async with admin_client(app) as admin:
            ready = await admin.get("/readyz")
            body = await ready.json()
        assert ready.status == 503 and "Read-only file system" in body["reason"]  # before: 200 ok
        assert body["tasks"][0]["task"] == "notifier-start" and body["tasks"][0]["failures"] >= 2
        refused = await client.get(path, allow_redirects=False, headers={"User-Agent": f.BROWSER_UA})
        assert refused.status == 503
        switch.off()

        async def ready_again() -> bool:
            return (await client.get("/readyz")).status == 200

        await eventually_async(ready_again)
    response = await client.get(path, allow_redirects=False, headers={"User-Agent": f.BROWSER_UA})
    assert response.status == 302
    await eventually(lambda: stub.received, timeout_s=40)  # delivered: a later try of the start succeeded
