"""Load generation for the HTTP benchmarks: wrk when installed, else an aiohttp client loop."""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import subprocess
import sys
import tempfile
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
