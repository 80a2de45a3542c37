"""The metrics' sample files and real processes: a restart keeps a live process's files, and a lost file never fails
a click (it was recorded: it is answered 302).

Before #16 a new `clickbus run` deleted the sample directory of every dead `clickbus run`, though its workers
(orphans) still wrote there; their next new series raised FileNotFoundError from `metrics.log_append`, after the
append, and the browser got a 500 for a recorded click.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from clickbus import config as configuration
from clickbus.creative import Inserter
from clickbus.keystore import load_keyring
from clickbus.log.port import Topic
from clickbus.metrics import MULTIPROC_ENV, create_metrics, private_dir
from clickbus.tokens import AdContext
from tests.support.ports import free_port
from tests.support.records import recorded
from tests.support.service import Service, write_config

CLICKS = 40
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"


def dead_pid() -> int:
    """The pid of a process that has exited."""
    done = subprocess.Popen(["true"])
    done.wait()
    return done.pid


def start_worker(directory: Path, samples: Path) -> tuple[subprocess.Popen[bytes], str, Path]:
    """`clickbus run --worker` writing its samples in `samples` (as a worker of a `clickbus run` does)."""
    port = free_port()
    config_path = write_config(directory, port, admin_port=free_port())
    argv = [sys.executable, "-m", "clickbus", "run", "--worker", "--config", str(config_path)]
    with (directory / "stderr.log").open("ab") as errors:
        process = subprocess.Popen(
            argv, stderr=errors, stdout=subprocess.DEVNULL, env={**os.environ, MULTIPROC_ENV: str(samples)}
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.poll() is None, (directory / "stderr.log").read_text()
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=1):
                return process, url, config_path
        except (OSError, urllib.error.URLError):
            time.sleep(0.05)
    raise AssertionError("worker not ready")


async def test_a_restart_keeps_a_live_worker_samples_and_a_lost_sample_file_never_fails_a_click(tmp_path: Path) -> None:
    samples = private_dir(dead_pid())  # the directory of a `clickbus run` killed with its worker left running
    (tmp_path / "worker").mkdir()
    worker, url, config_path = await asyncio.to_thread(start_worker, tmp_path / "worker", samples)
    restarted = None
    try:
        assert any(samples.glob(f"*_{worker.pid}.db"))
        (tmp_path / "next").mkdir()
        restarted = await asyncio.to_thread(Service(tmp_path / "next").start)  # sweeps dead runs' directories
        assert samples.is_dir()  # before: deleted under the live worker

        shutil.rmtree(
            samples, ignore_errors=True
        )  # and should the files go anyway (an operator, a tmp cleaner): clicks still redirect
        config = configuration.load(config_path, env={})
        inserter = Inserter(load_keyring(config), url, ttl_s=3600)
        paths = [
            inserter.click_url(
                AdContext(member_id=1, auction_id_64=n, landing_url="https://shop.example/")
            ).removeprefix(url)
            for n in range(1, CLICKS + 1)
        ]
        async with aiohttp.ClientSession() as session:

            async def click(path: str) -> int:
                async with session.get(url + path, allow_redirects=False, headers={"User-Agent": UA}) as response:
                    return response.status

            statuses = await asyncio.gather(*(click(p) for p in paths))
        assert statuses == [302] * CLICKS  # before: 500 after the append succeeded
        assert sorted(r["auction_id_64"] for r in await recorded(config, Topic.CLICKS)) == list(range(1, CLICKS + 1))
        logs = (tmp_path / "worker" / "stderr.log").read_text()
        failed = re.findall(r"metrics: (\w+) failed", logs)  # which samples need a new file depends on the path
        assert failed and len(failed) == len(set(failed))  # said, and once for each method
    finally:
        worker.terminate()
        assert worker.wait(20) == 0
        if restarted is not None:
            restarted.stop()
        shutil.rmtree(samples, ignore_errors=True)


def test_a_metric_that_fails_is_logged_once_and_counted_never_raised(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = create_metrics()

    def gone(*labels: str) -> None:  # what a vanished sample file does to a new series (the test above, for real)
        raise FileNotFoundError(2, "No such file or directory", "/dev/shm/clickbus-metrics-0-1/histogram_2.db")

    monkeypatch.setattr(metrics.append_seconds, "labels", gone)
    for _ in range(3):
        metrics.log_append("clicks", 0.001, True)
    said = [r for r in caplog.records if "metrics: log_append failed" in r.getMessage()]
    assert len(said) == 1 and said[0].levelname == "ERROR" and said[0].exc_info is not None
    assert metrics.registry.get_sample_value("clickbus_metric_errors_total", {"method": "log_append"}) == 3
