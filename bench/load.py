"""Load for the benchmarks: `wrk` when it is installed, else a pure-Python generator; and a service to aim it at."""

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
from pathlib import Path

from clickbus import config as configuration
from clickbus.creative import Inserter
from clickbus.keystore import load_keyring
from clickbus.landing import check_landing
from clickbus.tokens import AdContext

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
    return "wrk" if shutil.which("wrk") else "python"


def requests_per_second(url: str, *, seconds: float, connections: int, threads: int) -> float:
    """Throughput of GET `url` (not following the 302) with `connections` kept-alive connections."""
    if shutil.which("wrk"):
        return _wrk(url, seconds, connections, threads)
    return asyncio.run(_python_load(url, seconds, connections))


def _wrk(url: str, seconds: float, connections: int, threads: int) -> float:
    threads = max(1, min(threads, connections))
    argv = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(seconds))}s", url]
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    non_3xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non_3xx:
        raise RuntimeError(f"wrk saw {non_3xx.group(1)} failed responses:\n{out}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not match:
        raise RuntimeError(f"cannot read wrk output:\n{out}")
    return float(match.group(1))


async def _python_load(url: str, seconds: float, connections: int) -> float:
    from aiohttp import ClientSession, TCPConnector

    done = 0
    until = time.monotonic() + seconds

    async def one(session: ClientSession) -> None:
        nonlocal done
        while time.monotonic() < until:
            async with session.get(url, allow_redirects=False) as response:
                if response.status != 302:
                    raise RuntimeError(f"status {response.status}")
                done += 1

    started = time.monotonic()
    async with ClientSession(connector=TCPConnector(limit=connections)) as session:
        await asyncio.gather(*(one(session) for _ in range(connections)))
    return done / (time.monotonic() - started)


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def clickbus_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "clickbus", *args]


def print_rows(rows: list[dict[str, object]]) -> None:
    for row in rows:
        ratio = f"  ratio {row['ratio']:.2f}" if isinstance(row.get("ratio"), float) else ""
        print(f"{row['name']:<44} {row['value']:>12.1f} {row['unit']:<8}{ratio}  target {row['target']}")
