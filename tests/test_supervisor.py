"""`clickbus run --workers N`: the workers share one port and one metrics view; dead ones come back."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from clickbus.creative import Inserter
from clickbus.keystore import load_keyring
from clickbus.metrics import private_dir
from tests.support.edgeapp import click_path
from tests.support.ports import free_port
from tests.support.service import Service, write_config
from tests.test_metrics import sample


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def get(url: str) -> int:
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:  # 302 lands here when not followed
        return int(exc.code)


def worker_pids(service: Service) -> set[int]:
    return {int(pid) for pid in re.findall(r'"child_pid":(\d+)', service.logs())}


def metrics_text(service: Service) -> str:
    with urllib.request.urlopen(service.admin_url + "/metrics", timeout=5) as response:
        return str(response.read().decode())


def clicks_counted(service: Service, expected: int) -> float | None:
    """The click count /metrics reports once every worker has flushed (each does within a second)."""
    deadline = time.monotonic() + 5
    while True:
        seen = sample(metrics_text(service), "clickbus_clicks_total", source="redirect", reason="valid")
        if seen == expected or time.monotonic() > deadline:
            return seen
        time.sleep(0.1)


@pytest.mark.slow
def test_workers_share_the_port_the_metrics_and_are_restarted(tmp_path: Path) -> None:
    service = Service(tmp_path, workers=2)
    inserter = Inserter(load_keyring(service.config), service.config.edge.public_url, ttl_s=3600)
    service.start()
    try:
        clicks = 40
        # A fresh connection each time: SO_REUSEPORT spreads them over both workers.
        assert all(get(service.url + click_path(inserter, auction_id=i)) == 302 for i in range(clicks))
        assert clicks_counted(service, clicks) == clicks
        assert service.process is not None
        files = " ".join(os.listdir(private_dir(service.process.pid)))  # the supervisor's, in memory
        pids = {int(p) for p in re.findall(r"counter_(\d+)\.db", files)}
        assert len(pids) == 2  # both workers answered some of them

        first = worker_pids(service)
        assert len(first) == 2
        os.kill(min(first), signal.SIGKILL)
        deadline = time.monotonic() + 10
        while len(worker_pids(service)) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(worker_pids(service)) == 3, service.logs()
        service.wait_ready(listening=3)
        assert get(service.url + click_path(inserter, auction_id=1000)) == 302
        # the dead worker's counts are still counted
        assert clicks_counted(service, clicks + 1) == clicks + 1
    finally:
        assert service.stop() == 0, service.logs()
    assert all(not _alive(pid) for pid in worker_pids(service))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
def test_the_listening_line_comes_once_every_worker_listens(tmp_path: Path) -> None:
    """On Kafka a worker connects before it listens: a broker that never answers holds that for seconds."""
    with socket.socket() as blackhole:  # accepts connections (the kernel does) and never answers
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(64)
        broker = f"127.0.0.1:{blackhole.getsockname()[1]}"
        kafka = f'[log]\nbackend = "kafka"\n[log.kafka]\nbootstrap_servers = "{broker}"\nidempotence = false\n'
        kafka += "connect_timeout_ms = 1000\nrequest_timeout_ms = 1000\n"
        port, admin_port = free_port(), free_port()
        config = write_config(tmp_path, port, admin_port=admin_port, extra="\n" + kafka)
        argv = [sys.executable, "-m", "clickbus", "run", "--config", str(config), "--workers", "2", "--no-notifier"]
        with (tmp_path / "stderr.log").open("wb") as err:
            process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, text=True)
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            logs = (tmp_path / "stderr.log").read_text()
            listening = logs.count('"msg":"listening"')
            health = get(f"http://127.0.0.1:{port}/healthz")
        finally:
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=30)
    assert line.startswith(f"clickbus listening on 127.0.0.1:{port}") and "(2 workers)" in line
    assert listening == 2, logs
    assert health == 200
    assert "kafka unreachable at start" in logs  # the workers did wait for the broker first
