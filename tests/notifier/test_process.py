"""The notifier as a process: inside `clickbus run` (edge + notifier) and alone, killed mid-stream."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import orjson
import pytest
from pytest_aiohttp import AiohttpClient
from standardwebhooks import Webhook

from clickbus import runtime
from clickbus.creative import Inserter
from clickbus.edge.appkeys import KEYRING
from clickbus.log.embedded import EmbeddedLog
from clickbus.log.port import Log
from clickbus.tokens import AdContext
from tests.notifier import factory as f
from tests.notifier.conftest import StartStub
from tests.support.configs import notifier_config
from tests.support.waiting import eventually


async def test_click_through_the_edge_reaches_the_bidder(
    aiohttp_client: AiohttpClient, stubs: StartStub, tmp_path: Path
) -> None:
    stub = await stubs()
    config = notifier_config(tmp_path, {13: {"click_uri": stub.url}})
    app = runtime.edge_app(config, with_notifier=True)
    client = await aiohttp_client(app)
    ad = AdContext(member_id=13, auction_id_64=5, user_id_64=9, landing_url="https://advertiser.example/x")
    url = Inserter(app[KEYRING], config.edge.public_url, ttl_s=3600).click_url(ad)
    response = await client.get(
        url.removeprefix(config.edge.public_url), allow_redirects=False, headers={"User-Agent": f.BROWSER_UA}
    )
    assert response.status == 302
    await eventually(lambda: stub.received)
    request = orjson.loads(stub.received[0].body)["click_request"]
    assert (request["member_id"], request["auction_id_64"], request["user_id_64"]) == (13, 5, 9)
    assert request["user_agent"] == f.BROWSER_UA


def _config_file(tmp_path: Path, click_uri: str) -> Path:
    path = tmp_path / "clickbus.toml"
    path.write_text(
        f'data_dir = "{tmp_path}"\n'
        f'[members.13]\nclick_uri = "{click_uri}"\nsecret = "{f.SECRET}"\nallow_private = true\n'
        "[notifier]\nretry_base_s = 0.05\nretry_max_delay_s = 0.2\ncommit_interval_s = 0.05\n"
    )
    return path


def _start(config: Path) -> subprocess.Popen[bytes]:
    with (config.parent / "notifier.err").open("ab") as errors:
        return subprocess.Popen(
            [sys.executable, "-m", "clickbus", "notifier", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=errors,
        )


@pytest.mark.slow
async def test_sigkill_mid_stream_loses_nothing(log: Log, stubs: StartStub, tmp_path: Path) -> None:
    if not isinstance(log, EmbeddedLog):
        pytest.skip("the subprocess is configured for the embedded log at the test's path")
    stub = await stubs(delay_s=0.01)
    config = _config_file(tmp_path, stub.url)
    clicks = [f.click(13) for _ in range(600)]
    process = _start(config)
    try:
        await f.append(log, *clicks[:300])
        await eventually(lambda: len(stub.received) >= 100, timeout_s=20)
        process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(process.wait)
        killed_at = len(stub.received)
        await f.append(log, *clicks[300:])
        process = _start(config)
        wanted = {c.click_id for c in clicks}
        await eventually(lambda: wanted <= {r.webhook_id for r in stub.received}, timeout_s=30)
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(process.wait, 10)
    assert killed_at < 300  # the kill landed mid-stream, before the first 300 were all delivered
    bodies: dict[str, set[bytes]] = defaultdict(set)
    for received in stub.received:
        Webhook(f.SECRET).verify(received.body, received.headers)
        bodies[received.webhook_id].add(received.body)
    assert {orjson.loads(b)["click_request"]["auction_id_64"] for c in clicks for b in bodies[c.click_id]} == {
        c.auction_id_64 for c in clicks
    }
    assert all(len(same_id) == 1 for same_id in bodies.values())  # a duplicate is the same delivery, same id
    assert process.returncode == 0, (tmp_path / "notifier.err").read_text()
