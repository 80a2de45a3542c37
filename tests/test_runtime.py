"""The composition root: one metered log, stop limits from configuration, one stop-signal helper."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clickbus import runtime
from clickbus.errors import LogUnavailable
from clickbus.log.embedded import EmbeddedLog
from clickbus.log.metered import MeteredLog
from clickbus.log.port import Topic
from clickbus.metrics import create_metrics
from tests.support.configs import build_config


async def test_commands_get_the_configured_log_metered(tmp_path: Path) -> None:
    config = build_config(tmp_path)
    metrics = create_metrics()
    log = runtime.metered_log(config, metrics)
    assert isinstance(log, MeteredLog) and isinstance(log.inner, EmbeddedLog)
    async with runtime.started(log, config.log.stop_timeout_s):
        await log.append(Topic.CLICKS, b"k", b"{}")
    metrics.flush()
    labels = {"topic": Topic.CLICKS.value, "outcome": "ok"}
    assert metrics.registry.get_sample_value("clickbus_log_append_seconds_count", labels) == 1.0


async def test_a_started_log_is_stopped_when_its_block_fails(tmp_path: Path) -> None:
    log = EmbeddedLog(tmp_path / "log")
    with pytest.raises(RuntimeError, match="boom"):
        async with runtime.started(log, stop_timeout_s=5.0):
            await log.append(Topic.CLICKS, b"k", b"{}")
            raise RuntimeError("boom")
    assert not log.health.ready
    with pytest.raises(LogUnavailable):
        await log.append(Topic.CLICKS, b"k", b"{}")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_stop_signal_is_an_event_and_restores_the_handlers_before_it(signum: signal.Signals) -> None:
    before = signal.getsignal(signum)
    async with runtime.stop_signal() as stop:
        os.kill(os.getpid(), signum)
        await asyncio.wait_for(stop.wait(), timeout=5)
    assert signal.getsignal(signum) == before


@pytest.mark.slow
def test_notifier_command_stops_on_sigterm_within_the_configured_limit(tmp_path: Path) -> None:
    path = tmp_path / "clickbus.toml"
    path.write_text(f'data_dir = "{tmp_path}"\n[log]\nstop_timeout_s = 2.0\n')
    argv = [sys.executable, "-m", "clickbus", "notifier", "--config", str(path)]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as process:
        assert process.stdout is not None
        assert process.stdout.readline().startswith(b"clickbus notifier running")
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    assert time.monotonic() - sent < 2.0 + 5.0  # the limit, plus interpreter exit on a loaded machine
