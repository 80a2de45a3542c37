"""What `clickbus run` refuses before it starts anything: a held data directory, a port in use, an address the
host does not have, too many workers. Each is one line on stderr and exit 2, never a traceback or a shared port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.ports import free_port
from tests.support.service import Service, write_config

TIMEOUT_S = 20.0
NOT_HERE = "192.0.2.1"  # TEST-NET-1: an address no host here has


def clickbus(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "clickbus", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)


def run(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`clickbus run` that is expected to be refused: a run that starts instead is stopped, and fails the test."""
    try:
        return clickbus("run", "--config", str(config), "--no-notifier", *args)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"clickbus run started instead of being refused: {exc.stderr!r}") from None


def config_in(directory: Path, port: int, admin_port: int) -> Path:
    directory.mkdir()
    return write_config(directory, port, admin_port=admin_port)


def config_listening_at(directory: Path, key: str, address: str) -> Path:
    """A configuration whose `edge.<key>` is `address` (the other listener on a free port)."""
    listeners = {"listen": f"127.0.0.1:{free_port()}", "admin_listen": f"127.0.0.1:{free_port()}", key: address}
    path = directory / "clickbus.toml"
    path.write_text(
        f'data_dir = "{directory / "var"}"\n[edge]\n' + "".join(f'{k} = "{v}"\n' for k, v in listeners.items())
    )
    return path


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One `clickbus run --workers 2` that the tests try to start beside."""
    service = Service(tmp_path_factory.mktemp("running"), workers=2)
    service.start()
    try:
        yield service
    finally:
        assert service.stop() == 0, service.logs()


@pytest.mark.slow
def test_a_second_run_on_the_same_data_dir_is_refused_naming_it_and_its_holder(running: Service) -> None:
    done = run(running.config_path)
    assert done.returncode == 2
    assert running.process is not None
    data_dir = running.directory / "var"
    assert (
        done.stderr == f"clickbus: data_dir {data_dir} is in use by another clickbus run (pid {running.process.pid})\n"
    )


@pytest.mark.slow
@pytest.mark.parametrize(("listener", "workers"), [("public", 1), ("admin", 2)])
def test_a_second_run_on_a_port_in_use_is_refused_in_one_line(
    running: Service, tmp_path: Path, listener: str, workers: int
) -> None:
    """Before the fix it started and shared the port (SO_REUSEPORT): clicks went to either run, with its own keys."""
    port = running.port if listener == "public" else free_port()
    admin_port = running.admin_port if listener == "admin" else free_port()
    done = run(config_in(tmp_path / "other", port, admin_port), "--workers", str(workers))
    assert (done.returncode, done.stderr) == (
        2,
        f"127.0.0.1:{port if listener == 'public' else admin_port} is already in use\n",
    )


def test_a_port_any_other_program_listens_on_is_refused_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = run(config_in(tmp_path / "run", port, free_port()))
    assert (done.returncode, done.stderr) == (2, f"127.0.0.1:{port} is already in use\n")


@pytest.mark.parametrize("key", ["listen", "admin_listen"])
def test_an_address_the_host_does_not_have_is_one_line(tmp_path: Path, key: str) -> None:
    """OSError 99 (EADDRNOTAVAIL) was a traceback."""
    done = run(config_listening_at(tmp_path, key, f"{NOT_HERE}:8080"))
    assert (done.returncode, done.stderr) == (
        2,
        f"clickbus: edge.{key} {NOT_HERE}:8080: this host has no such address\n",
    )


def test_sign_neither_binds_nor_resolves_the_listeners(tmp_path: Path) -> None:
    """`clickbus sign` only mints a URL: an edge.listen the host does not have changes nothing for it."""
    config = config_listening_at(tmp_path, "listen", f"{NOT_HERE}:8080")
    done = clickbus("sign", "--config", str(config), "--member", "13", "--landing", "https://shop.example/")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("http://127.0.0.1:8080/ck/")


def test_more_workers_than_four_per_cpu_are_refused_unless_forced(tmp_path: Path) -> None:
    """`--workers 1000` forked until the OOM killer came."""
    cpus = len(os.sched_getaffinity(0))
    with socket.socket() as holder:  # with --force the run goes on to bind, and stops there: nothing is forked
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        config = config_in(tmp_path / "run", port, free_port())
        refused = run(config, "--workers", str(4 * cpus + 1))
        forced = run(config, "--workers", str(4 * cpus + 1), "--force")
    assert refused.returncode == 2
    assert refused.stderr == (
        f"clickbus: --workers {4 * cpus + 1} is more than 4 per CPU ({4 * cpus} on {cpus}); "
        "add --force to start them anyway\n"
    )
    assert (forced.returncode, forced.stderr) == (2, f"127.0.0.1:{port} is already in use\n")
