"""Load generation for the HTTP benchmarks: wrk when installed, else an aiohttp client loop; and pinning.

Every HTTP benchmark pins the server process (all its threads: children and threads inherit the
affinity of a process started under `taskset -c`) to SERVER_CORES and the load generator to
LOAD_CORE, so that server and load do not take turns on one core and the figures measure the
server's cost per request. Where taskset or a second core is missing, nothing is pinned and
`PINNING` says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from clickbus import config as configuration
from clickbus.creative import Inserter, Insertion
from clickbus.keystore import load_keyring
from clickbus.landing import check_landing
from clickbus.tokens import AdContext

_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_BAD = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
LANDING = "https://landing.example/page"
SHM = Path("/dev/shm")
SERVER_CORES = "0"
LOAD_CORE = 1


def can_pin() -> bool:
    """taskset is installed and this process may run on cores 0 and 1."""
    return bool(shutil.which("taskset")) and hasattr(os, "sched_getaffinity") and {0, 1} <= os.sched_getaffinity(0)


def pinning() -> str:
    """How the HTTP benchmarks place server and load, for the table."""
    if not can_pin():
        return "not pinned (taskset or a second core missing): server and load share the cores"
    return f"server pinned to core {SERVER_CORES}, all threads; load ({generator()}) on core {LOAD_CORE}"


def on_cores(argv: Sequence[str], cores: str) -> list[str]:
    """`argv` run under `taskset -c cores` (a list like "0" or "0,1"), when pinning is possible."""
    return ["taskset", "-c", cores, *argv] if can_pin() else list(argv)


def pin_process(pid: int, cores: set[int]) -> None:
    """Move every thread of a running process (one started without taskset, e.g. a broker) to `cores`."""
    if not can_pin():
        return
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(task.name), cores)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A temporary data dir and config, and a server process started with `argv` (plus `--config`)."""

    def __init__(self, argv: list[str], *, memory: bool = False, config: str = "", cores: str = SERVER_CORES) -> None:
        # memory: the log on tmpfs, where fsync is nearly free and the figures measure CPU, not the disk
        base = SHM if memory and SHM.is_dir() else None
        self.directory = Path(tempfile.mkdtemp(prefix="clickbus-bench-", dir=base))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = self.directory / "clickbus.toml"
        self.config_path.write_text(
            f'data_dir = "{self.directory / "var"}"\n'
            f'[edge]\nlisten = "127.0.0.1:{self.port}"\npublic_url = "{self.url}"\n'
            f'admin_listen = "127.0.0.1:{free_port()}"\n{config}'
        )
        self.argv = on_cores([*argv, "--config", str(self.config_path)], cores)
        self.process: subprocess.Popen[bytes] | None = None

    def click_url(self) -> str:
        """A click URL signed with the server's own (generated) key."""
        return self.insertion().click_url or ""

    def insertion(self) -> Insertion:
        """The tracking URLs of one ad, signed with the server's own (generated) key."""
        config = configuration.load(self.config_path, env={})
        inserter = Inserter(load_keyring(config), config.edge.public_url, ttl_s=3600)
        return inserter.insert("", AdContext(member_id=1, auction_id_64=1, landing_url=check_landing(LANDING)))

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the server process and its children (workers) have used so far (Linux /proc)."""
        assert self.process is not None
        return process_cpu_s(self.process.pid)

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


def process_cpu_s(pid: int) -> float:
    """CPU time (user + system) process `pid` and its children have used so far (Linux /proc)."""
    return sum(_cpu_seconds(one) for one in (pid, *_children(pid)))


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


@dataclass(frozen=True, slots=True)
class Target:
    """One server to load: its command (given `--config`), the URL to load on it, and the body to POST."""

    argv: tuple[str, ...]
    url: Callable[[Server], str]
    json_body: bytes | None = None
    config: str = ""
    paths: Callable[[Server], list[str]] | None = None  # paths to GET in turn instead of `url`'s alone


def paths_of(target: Target, server: Server) -> list[str] | None:
    """The paths `target` loads in turn on `server`, if it loads more than its one URL."""
    return target.paths(server) if target.paths is not None else None


def bare_server() -> tuple[str, ...]:
    """The bare aiohttp baselines of `bench.servers`."""
    return (sys.executable, "-m", "bench.servers", "bare")


def clickbus_run(*args: str) -> tuple[str, ...]:
    return (sys.executable, "-m", "clickbus", "run", *args)


@dataclass(frozen=True, slots=True)
class Rate:
    """Requests/s a server sustained, and the CPU time (all its threads and children) each request took."""

    rps: float
    cpu_us: float


def medians(targets: dict[str, Target], *, rounds: int, duration_s: float, connections: int) -> dict[str, Rate]:
    """Median rate of each target over `rounds`, the targets taking turns so that drift hits them alike."""
    rates: dict[str, list[Rate]] = {name: [] for name in targets}
    for _ in range(rounds):
        for name, target in targets.items():
            rates[name].append(served_rate(target, duration_s=duration_s, connections=connections))
    return {
        name: Rate(statistics.median(r.rps for r in values), statistics.median(r.cpu_us for r in values))
        for name, values in rates.items()
    }


def served_rate(target: Target, *, duration_s: float, connections: int) -> Rate:
    """Start `target` pinned, warm it up for a second, then measure it.

    CPU per request moves less than requests/s when other work shares the machine: compare both.
    """
    with Server(list(target.argv), config=target.config) as server:
        url, paths = target.url(server), paths_of(target, server)
        requests_per_s(url, connections=connections, duration_s=1, json_body=target.json_body, paths=paths)
        cpu, started = server.cpu_seconds(), time.monotonic()
        rps = requests_per_s(
            url, connections=connections, duration_s=duration_s, json_body=target.json_body, paths=paths
        )
        served = rps * (time.monotonic() - started)
        return Rate(rps, (server.cpu_seconds() - cpu) / served * 1e6)


def compared(name: str, ours: Rate, base: Rate, baseline_name: str, target: str, detail: str) -> dict[str, Any]:
    """A row of CPU per request beside its same-run baseline's; the ratio is the baseline's over ours (higher: closer).

    CPU per request is the figure: on a shared machine it moves far less than requests/s, which the detail gives.
    """
    rps = f"{ours.rps:,.0f} req/s vs {base.rps:,.0f} req/s (ratio {ours.rps / base.rps:.2f})"
    row = {"name": name, "value": ours.cpu_us, "unit": "us CPU/request", "baseline": base.cpu_us}
    ratio = base.cpu_us / ours.cpu_us if ours.cpu_us else None
    return {**row, "baseline_name": baseline_name, "ratio": ratio, "target": target, "detail": f"{detail}; {rps}"}


def ratio_row(
    name: str, value: float, baseline: float, baseline_name: str, target: str, **extra: Any
) -> dict[str, Any]:
    """A table row of requests/s beside its same-run baseline."""
    row = {"name": name, "value": value, "unit": "req/s", "baseline": baseline, "baseline_name": baseline_name}
    return {**row, "ratio": value / baseline if baseline else None, "target": target, **extra}


_BOUND = re.compile(r"^(?:ratio )?(>=|<=)\s*([\d.]+)(?:\s*\(.*\))?$")


def met(row: dict[str, Any]) -> bool | None:
    """Whether a row's ratio meets a target of the form `>= 0.6` or `<= 1.05 (...)`; None for other targets."""
    bound = _BOUND.match(row["target"])
    if bound is None or row.get("ratio") is None:
        return None
    limit = float(bound.group(2))
    return bool(row["ratio"] >= limit if bound.group(1) == ">=" else row["ratio"] <= limit)


def generator() -> str:
    return "wrk" if shutil.which("wrk") else "aiohttp client"


def requests_per_s(
    url: str,
    *,
    connections: int,
    duration_s: float,
    threads: int = 1,
    json_body: bytes | None = None,
    paths: Sequence[str] | None = None,
) -> float:
    """Sustained requests/s against `url` (a JSON POST when `json_body` is given); raises on any 4xx/5xx.

    `paths`: GET these paths of `url`'s server in turn (distinct clicks) instead of `url` over and over.
    """
    if not shutil.which("wrk"):
        with pinned({LOAD_CORE}):
            return asyncio.run(_client_loop(url, connections, duration_s, json_body, paths))
    command = [
        *on_cores(["wrk"], str(LOAD_CORE)),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        url,
    ]
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as script:
        if json_body is not None or paths:
            script.write(_post_script(json_body) if json_body is not None else _paths_script(paths or []))
            script.flush()
            command[-1:-1] = ["-s", script.name]
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    if bad := _BAD.search(out):
        raise RuntimeError(f"{bad.group(1)} error responses from {url}")
    match = _RPS.search(out)
    if match is None:
        raise RuntimeError(f"cannot read wrk output:\n{out}")
    return float(match.group(1))


@contextmanager
def pinned(cores: set[int]) -> Iterator[None]:
    """The calling thread, and threads it starts meanwhile, on `cores` for the block (in-process load or work)."""
    if not can_pin():
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cores)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def _post_script(body: bytes) -> str:
    """A wrk script that POSTs `body` as JSON (Lua long brackets keep the body verbatim)."""
    headers = 'wrk.headers["Content-Type"] = "application/json"'
    return f'wrk.method = "POST"\n{headers}\nwrk.body = [==[{body.decode()}]==]\n'


def _paths_script(paths: Sequence[str]) -> str:
    """A wrk script that GETs `paths` in turn, one after another over all connections."""
    table = ",\n".join(f"[==[{path}]==]" for path in paths)
    return (
        f"local paths = {{\n{table}\n}}\nlocal i = 0\n"
        "request = function()\n  i = i % #paths + 1\n  return wrk.format(nil, paths[i])\nend\n"
    )


async def _client_loop(
    url: str, connections: int, duration_s: float, json_body: bytes | None = None, paths: Sequence[str] | None = None
) -> float:
    done = 0
    base = url.split("/", 3)
    urls = [f"{base[0]}//{base[2]}{path}" for path in paths] if paths else [url]
    deadline = time.monotonic() + duration_s
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                method, headers = ("GET", {}) if json_body is None else ("POST", {"Content-Type": "application/json"})
                async with session.request(
                    method, urls[done % len(urls)], data=json_body, headers=headers, allow_redirects=False
                ) as response:
                    if response.status >= 400:
                        raise RuntimeError(f"{response.status} from {url}")
                    await response.read()
                done += 1

        await asyncio.gather(*(worker() for _ in range(connections)))
    return done / duration_s


@contextmanager
def serving(
    argv: Sequence[str], ready_url: str, *, env: dict[str, str] | None = None, cores: str = SERVER_CORES
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server process pinned to `cores` until the block ends; wait until `ready_url` answers 200."""
    process = subprocess.Popen(on_cores(argv, cores), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
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
