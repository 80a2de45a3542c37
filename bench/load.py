"""Load generation for the HTTP benchmarks: wrk when installed, else an aiohttp client loop."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp

from clickbus import config as configuration
from clickbus.creative import Inserter
from clickbus.keystore import load_keyring
from clickbus.landing import check_landing
from clickbus.tokens import AdContext

_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_BAD = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
LANDING = "https://landing.example/page"
SHM = Path("/dev/shm")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A temporary data dir and config, and a server process started with `argv` (plus `--config`)."""

    def __init__(self, argv: list[str], *, memory: bool = False) -> None:
        # memory: the log on tmpfs, where fsync is nearly free and the figures measure CPU, not the disk
        base = SHM if memory and SHM.is_dir() else None
        self.directory = Path(tempfile.mkdtemp(prefix="clickbus-bench-", dir=base))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = self.directory / "clickbus.toml"
        self.config_path.write_text(
            f'data_dir = "{self.directory / "var"}"\n'
            f'[edge]\nlisten = "127.0.0.1:{self.port}"\npublic_url = "{self.url}"\n'
            f'admin_listen = "127.0.0.1:{free_port()}"\n'
        )
        self.argv = [*argv, "--config", str(self.config_path)]
        self.process: subprocess.Popen[bytes] | None = None

    def click_url(self) -> str:
        """A click URL signed with the server's own (generated) key."""
        config = configuration.load(self.config_path, env={})
        inserter = Inserter(load_keyring(config), config.edge.public_url, ttl_s=3600)
        return inserter.click_url(AdContext(member_id=1, auction_id_64=1, landing_url=check_landing(LANDING)))

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the server process and its children (workers) have used so far (Linux /proc)."""
        assert self.process is not None
        return sum(_cpu_seconds(pid) for pid in (self.process.pid, *_children(self.process.pid)))

    def __enter__(self) -> Server:
        self.click_url()  # generates the key before the workers race to
        self.process = subprocess.Popen(self.argv, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"server {self.argv} did not start")

    def __exit__(self, *exc: object) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def generator() -> str:
    return "wrk" if shutil.which("wrk") else "aiohttp client"


def requests_per_s(
    url: str, *, connections: int, duration_s: float, threads: int = 1, json_body: bytes | None = None
) -> float:
    """Sustained requests/s against `url` (a JSON POST when `json_body` is given); raises on any 4xx/5xx."""
    if not shutil.which("wrk"):
        return asyncio.run(_client_loop(url, connections, duration_s, json_body))
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration_s))}s", url]
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        if json_body is not None:
            script.write(_post_script(json_body))
            script.flush()
            command[-1:-1] = ["-s", script.name]
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    if bad := _BAD.search(out):
        raise RuntimeError(f"{bad.group(1)} error responses from {url}")
    match = _RPS.search(out)
    if match is None:
        raise RuntimeError(f"cannot read wrk output:\n{out}")
    return float(match.group(1))


def _post_script(body: bytes) -> str:
    """A wrk script that POSTs `body` as JSON (Lua long brackets keep the body verbatim)."""
    headers = 'wrk.headers["Content-Type"] = "application/json"'
    return f'wrk.method = "POST"\n{headers}\nwrk.body = [==[{body.decode()}]==]\n'


async def _client_loop(url: str, connections: int, duration_s: float, json_body: bytes | None = None) -> float:
    done = 0
    deadline = time.monotonic() + duration_s
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                method, headers = ("GET", {}) if json_body is None else ("POST", {"Content-Type": "application/json"})
                async with session.request(
                    method, url, data=json_body, headers=headers, allow_redirects=False
                ) as response:
                    if response.status >= 400:
                        raise RuntimeError(f"{response.status} from {url}")
                    await response.read()
                done += 1

        await asyncio.gather(*(worker() for _ in range(connections)))
    return done / duration_s


@contextmanager
def serving(
    argv: Sequence[str], ready_url: str, *, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server process until the block ends; wait until `ready_url` answers 200."""
    process = subprocess.Popen(list(argv), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_ready(ready_url, process)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()


def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    import urllib.request

    for _ in range(300):
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {process.stderr.read().decode() if process.stderr else ''}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} never became ready")


def python() -> str:
    return sys.executable


ROOT = Path(__file__).parent.parent


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def clickbus_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "clickbus", *args]


def print_rows(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        ratio = f"{row['ratio']:.2f}" if row.get("ratio") is not None else "-"
        baseline = f"{row['baseline']:,.0f}" if row.get("baseline") is not None else "-"
        print(
            f"{row['name']}: {row['value']:,.1f} {row['unit']} | baseline {baseline} | ratio {ratio} ({row['target']})"
        )
