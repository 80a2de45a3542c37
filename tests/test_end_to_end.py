"""The newcomer's tour, for real: `clickbus run` as a process, a click over HTTP, `clickbus tail`."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests.support.ports import free_port

ROOT = Path(__file__).parent.parent


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "CLICKBUS_LISTEN": f"127.0.0.1:{port}",
        "CLICKBUS_PUBLIC_URL": base,
        "CLICKBUS_DATA_DIR": str(tmp_path / "data"),
    }
    command = [sys.executable, "-m", "clickbus", "run", "--config", str(ROOT / "conf" / "clickbus.toml")]
    process = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        yield base, env
    finally:
        process.terminate()
        output = process.communicate(timeout=15)[0].decode()
        assert process.returncode == 0, output


async def wait_ready(session: aiohttp.ClientSession, base: str) -> None:
    for _ in range(200):
        try:
            async with session.get(f"{base}/readyz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError("clickbus did not become ready")


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_insert_click_land_and_tail(
    edge: tuple[str, dict[str, str]], session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    base, env = edge
    await wait_ready(session, base)
    body = {
        "markup": '<a href="${CLICK_URL}https://shop.example/p/1">buy</a>',
        "landing_url": "https://shop.example/",
        "auction": {"member_id": 13, "auction_id_64": 677373076784237441, "user_id_64": 42},
    }
    async with session.post(f"{base}/v1/insert", json=body) as response:
        assert response.status == 200
        inserted = await response.json()
    click_url = inserted["markup"].split('"')[1]
    async with session.get(click_url, allow_redirects=False, headers={"Referer": "https://pub.example/"}) as response:
        assert response.status == 302
        assert response.headers["Location"] == "https://shop.example/p/1"

    tail = [sys.executable, "-m", "clickbus", "tail", "--from-beginning", "--member", "13"]
    process = await asyncio.create_subprocess_exec(*tail, env=env, cwd=tmp_path, stdout=subprocess.PIPE)
    stdout, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0
    [record] = [orjson.loads(line) for line in stdout.splitlines()]
    assert record["auction_id_64"] == 677373076784237441
    assert record["landing_url"] == "https://shop.example/p/1"
    assert record["referer_url"] == "https://pub.example/"

    other = [sys.executable, "-m", "clickbus", "tail", "--from-beginning", "--member", "14"]
    process = await asyncio.create_subprocess_exec(*other, env=env, cwd=tmp_path, stdout=subprocess.PIPE)
    assert (await asyncio.wait_for(process.communicate(), 30))[0] == b""


def test_invalid_configuration_fails_at_start_naming_the_key(tmp_path: Path) -> None:
    env = {**os.environ, "CLICKBUS_LISTEN": "not-an-address", "CLICKBUS_DATA_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "clickbus", "run"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert "edge.listen: expected host:port, got 'not-an-address'" in result.stderr
    assert "Traceback" not in result.stderr


def test_sign_mints_a_working_click_url(tmp_path: Path) -> None:
    env = {**os.environ, "CLICKBUS_DATA_DIR": str(tmp_path), "CLICKBUS_PUBLIC_URL": "https://clk.example"}
    command = [sys.executable, "-m", "clickbus", "sign", "--member", "13", "--landing", "https://shop.example/"]
    result = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("https://clk.example/ck/")
    bad = subprocess.run([*command[:-1], "javascript:alert(1)"], env=env, cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 1 and "scheme must be http or https" in bad.stderr
