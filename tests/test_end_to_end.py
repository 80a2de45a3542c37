"""The newcomer's tour, for real: `clickbus run` as a process, a click over HTTP, `clickbus tail`; and every
reference document's example request, end to end to a bidder."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
import pytest

from tests.support.bidder import BidderStub
from tests.support.ports import free_port
from tests.support.service import Service

ROOT = Path(__file__).parent.parent
CONF = str(ROOT / "conf" / "clickbus.toml")  # outside the checkout a command names its configuration


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "CLICKBUS_LISTEN": f"127.0.0.1:{port}",
        "CLICKBUS_ADMIN_LISTEN": f"127.0.0.1:{free_port()}",
        "CLICKBUS_PUBLIC_URL": base,
        "CLICKBUS_DATA_DIR": str(tmp_path / "data"),
    }
    command = [sys.executable, "-m", "clickbus", "run", "--config", CONF]
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
    async with session.post(f"http://{env['CLICKBUS_ADMIN_LISTEN']}/v1/insert", json=body) as response:
        assert response.status == 200
        inserted = await response.json()
    click_url = inserted["markup"].split('"')[1]
    async with session.get(click_url, allow_redirects=False, headers={"Referer": "https://pub.example/"}) as response:
        assert response.status == 302
        assert response.headers["Location"] == "https://shop.example/p/1"

    tail = [sys.executable, "-m", "clickbus", "tail", "--config", CONF, "--member", "13"]
    process = await asyncio.create_subprocess_exec(*tail, env=env, cwd=tmp_path, stdout=subprocess.PIPE)
    stdout, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0
    [record] = [orjson.loads(line) for line in stdout.splitlines()]
    assert record["auction_id_64"] == 677373076784237441
    assert record["landing_url"] == "https://shop.example/p/1"
    assert record["referer_url"] == "https://pub.example/"

    other = [sys.executable, "-m", "clickbus", "tail", "--config", CONF, "--member", "14"]
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


# Every flow of the reference documents, as their own examples send it, through `clickbus run`
# (edge and in-process notifier) to a real bidder stub on localhost.

REFERENCE = Path(__file__).parent / "reference"
API_KEY = "cbk_end-to-end-publisher"
BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
SERVER_AGENTS = [
    "python-requests/2.31.0",
    "Go-http-client/1.1",
    "axios/1.6.7",
    "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
]


def xandr_example() -> dict[str, Any]:
    """The `click_request` of Xandr's "Example Click Request", parsed out of the document."""
    text = (REFERENCE / "xandr-click-request.md").read_text(encoding="utf-8")
    found = re.search(r"## Example Click Request\s*```[^\n]*\n(.*?)```", text, re.DOTALL)
    assert found is not None
    example: dict[str, Any] = json.loads(found.group(1))
    return example


@dataclass(frozen=True, slots=True)
class HttpExample:
    """A VTEX document's request example: `METHOD URL HTTP/1.1`, headers, a blank line, the body."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes


def vtex_example(name: str) -> HttpExample:
    text = (REFERENCE / name).read_text(encoding="utf-8")
    request = re.findall(r"```json\n(.*?)```", text, re.DOTALL)[0]
    head, _, body = request.partition("\n\n")
    request_line, *header_lines = head.splitlines()
    method, url, _ = request_line.split(" ")
    headers = dict(line.split(": ", 1) for line in header_lines)
    return HttpExample(method, url, headers, body.strip().encode())


def ens_curl() -> list[str]:
    """The ENS document's curl command, as argv."""
    text = (REFERENCE / "ens-click-api.txt").read_text(encoding="utf-8")
    found = re.search(r"^curl .*?'\n", text, re.DOTALL | re.MULTILINE)
    assert found is not None
    return shlex.split(found.group(0).replace("\\\n", " "))


def curl_parts(argv: list[str]) -> tuple[str, str, dict[str, str], bytes]:
    """Method, URL, headers and body of a curl argv (`-X`, `-H`, `-d`)."""
    pairs = list(itertools.pairwise(argv))
    options = {flag: value for flag, value in pairs if flag in ("-X", "-d")}
    url = next(a for a in argv if a.startswith("http"))
    headers = dict(value.split(": ", 1) for flag, value in pairs if flag == "-H")
    return options["-X"], url, headers, options["-d"].encode()


@dataclass(slots=True)
class Stack:
    """`clickbus run` (edge and notifier) whose member 13 is a bidder stub on localhost."""

    service: Service
    bidder: BidderStub

    def url(self, reference_url: str) -> str:
        """A reference URL pointed at this edge: same path and query, this host."""
        parts = urlsplit(reference_url)
        return self.service.url + parts.path + (f"?{parts.query}" if parts.query else "")

    async def delivered(self, n: int) -> list[dict[str, Any]]:
        """The `click_request`s the bidder received, once it has `n` (then a moment more, to catch extras)."""
        for _ in range(400):
            if len(self.bidder.received) >= n:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        return [json.loads(r.body)["click_request"] for r in self.bidder.received]

    async def tail(self, topic: str) -> list[dict[str, Any]]:
        argv = [sys.executable, "-m", "clickbus", "tail", "--config", str(self.service.config_path)]
        process = await asyncio.create_subprocess_exec(
            *argv, "--topic", topic, "--from-beginning", stdout=subprocess.PIPE
        )
        stdout, _ = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 0
        return [orjson.loads(line) for line in stdout.splitlines()]


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    bidder = BidderStub()
    await bidder.start()
    extra = (
        f'[members.13]\nclick_uri = "{bidder.url}"\nallow_private = true\n'
        "[notifier]\ncommit_interval_s = 0.05\n"
        '[campaigns.1]\nmember_id = 13\nplacements = ["header_banner"]\n'
        f'[api_keys.publisher]\nsha256 = "{hashlib.sha256(API_KEY.encode()).hexdigest()}"\nrate_per_s = 50\n'
    )
    service = Service(tmp_path, notifier=True, extra=extra)
    await asyncio.to_thread(service.start)
    try:
        yield Stack(service, bidder)
    finally:
        service.stop()
        await bidder.stop()


async def _insert(session: aiohttp.ClientSession, stack: Stack, auction: dict[str, Any]) -> dict[str, Any]:
    body = {"markup": "<a href='${CLICK_URL}'>ad</a>", "landing_url": "https://shop.example/", "auction": auction}
    async with session.post(f"{stack.service.admin_url}/v1/insert", json=body) as response:
        assert response.status == 200
        inserted: dict[str, Any] = await response.json()
    return inserted


async def test_xandr_redirect_click_reaches_the_bidder_as_the_reference_example(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    example = xandr_example()["click_request"]
    auction = {k: example[k] for k in ("auction_id_64", "member_id", "user_id_64", "userdata_json", "test")}
    inserted = await _insert(session, stack, auction)
    headers = {"Referer": example["referer_url"], "User-Agent": example["user_agent"]}
    async with session.get(inserted["click_url"], headers=headers, allow_redirects=False) as response:
        assert response.status == 302
    await stack.delivered(1)
    (received,) = stack.bidder.received
    timestamp = json.loads(received.body)["click_request"]["timestamp"]
    expected = {"click_request": {**example, "timestamp": timestamp}}
    assert received.body == orjson.dumps(expected)  # the reference's bytes, key order and all


@pytest.mark.parametrize("kind", ["clicks", "impressions"])
async def test_vtex_beacon_examples(stack: Stack, session: aiohttp.ClientSession, kind: str) -> None:
    """The VTEX request example, on an `{ad_id}` this edge issued: a click reaches the bidder; an impression is
    read and deduplicated by the notifier (its repeat is a duplicate) and is never sent to a bidder as a click."""
    example = vtex_example(f"vtex-{kind}.md")
    inserted = await _insert(session, stack, {"member_id": 13, "auction_id_64": 4711})
    ours = inserted["beacons"][kind.removesuffix("s")]
    url = stack.url(example.url.replace(urlsplit(example.url).path, urlsplit(ours).path))
    sends = 1 if kind == "clicks" else 2
    for _ in range(sends):
        headers = {**example.headers, "User-Agent": BROWSER_UA}  # beacons are sent by the page, in a browser
        async with session.request(example.method, url, headers=headers, data=example.body) as response:
            assert response.status == 202, await response.text()
    if kind == "clicks":
        (click,) = await stack.delivered(1)
        assert click["auction_id_64"] == 4711 and click["member_id"] == 13
        return
    for _ in range(200):
        outcomes = await stack.tail("deliveries")
        if outcomes:
            break
        await asyncio.sleep(0.1)
    (duplicate,) = outcomes
    first, second = await stack.tail("impressions")
    assert (duplicate["click_id"], duplicate["reason"]) == (second["impression_id"], "duplicate")
    assert first["pos"] == 1 and first["user_id"] == json.loads(example.body)["user_id"]
    assert stack.bidder.received == []


async def test_ens_server_click_example_reaches_the_bidder_from_every_server_client(
    stack: Stack, session: aiohttp.ClientSession
) -> None:
    """The ENS curl request, run by curl itself, then sent with the user agents of other server HTTP clients."""
    argv = [a.replace("YOUR_API_KEY", API_KEY) for a in ens_curl()]
    method, url, headers, body = curl_parts(argv)
    run = [stack.url(a) if a == url else a for a in argv]
    curl = await asyncio.create_subprocess_exec(*run, "--silent", stdout=subprocess.PIPE)
    answer = (await asyncio.wait_for(curl.communicate(), 30))[0]
    assert orjson.loads(answer) == {"status": "success", "message": "Click tracked successfully"}
    for agent in SERVER_AGENTS:
        sent = {**headers, "User-Agent": agent}
        async with session.request(method, stack.url(url), headers=sent, data=body) as response:
            assert response.status == 200
    clicks = await stack.delivered(1 + len(SERVER_AGENTS))
    assert sorted(c["user_agent"] for c in clicks) == sorted([f"curl/{_curl_version()}", *SERVER_AGENTS])
    assert all(c["member_id"] == 13 and c["test"] is False for c in clicks)


def _curl_version() -> str:
    return subprocess.run(["curl", "--version"], capture_output=True, text=True, check=True).stdout.split()[1]
