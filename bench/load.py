"""Load generation for the HTTP benchmarks: wrk when installed, else an aiohttp client loop."""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import aiohttp

_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_BAD = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def generator() -> str:
    return "wrk" if shutil.which("wrk") else "aiohttp client"


def requests_per_s(url: str, *, connections: int, duration_s: float, threads: int = 1) -> float:
    """Sustained requests/s against `url`; raises if any answer was not 2xx/3xx."""
    if not shutil.which("wrk"):
        return asyncio.run(_client_loop(url, connections, duration_s))
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration_s))}s", url]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    if bad := _BAD.search(out):
        raise RuntimeError(f"{bad.group(1)} error responses from {url}")
    match = _RPS.search(out)
    if match is None:
        raise RuntimeError(f"cannot read wrk output:\n{out}")
    return float(match.group(1))


async def _client_loop(url: str, connections: int, duration_s: float) -> float:
    done = 0
    deadline = time.monotonic() + duration_s
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                async with session.get(url, allow_redirects=False) as response:
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
