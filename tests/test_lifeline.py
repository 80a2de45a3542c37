"""No child outlives its supervisor: by the kernel's parent-death signal, by the pipe, and by both in a real run."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from clickbus import lifeline, supervisor
from clickbus.errors import CannotStart
from clickbus.keystore import load_keyring
from tests.chaos.load import ClickLoad
from tests.support.processes import alive_with, survivors, survivors_async
from tests.support.service import Service
from tests.support.waiting import eventually

SUPERVISOR = """
import os, subprocess, sys, time
from clickbus.lifeline import Lifeline
line = Lifeline()
env = {**os.environ, **line.env()}
child = subprocess.Popen([sys.executable, "-c", sys.argv[1]], env=env, pass_fds=(line.read_fd,))
print(child.pid, flush=True)
time.sleep(120)
"""
CHILD = """
import os, signal, sys, time
from clickbus import lifeline
MECHANISM, ON_SIGTERM = {mechanism!r}, {on_sigterm!r}
if MECHANISM == "pipe":  # as where prctl is missing
    lifeline._arm_death_signal = lambda signum: False
else:  # a line whose write end this process holds itself: it never ends, the death signal alone can act
    read_end, _keep = os.pipe()
    os.environ[lifeline.ENV_LIFELINE] = f"{{os.getppid()}}:{{read_end}}"
def on_term(signum, frame):
    print("SIGTERM", flush=True)
    if ON_SIGTERM == "exit":
        sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
lifeline.hold(1.0)
print("holding", flush=True)
time.sleep(120)
"""


@pytest.mark.parametrize(("mechanism", "on_sigterm"), [("death signal", "exit"), ("pipe", "exit"), ("pipe", "hang")])
def test_a_child_stops_when_its_supervisor_is_killed(mechanism: str, on_sigterm: str) -> None:
    """Each mechanism alone stops the child; one whose drain hangs exits `stop_within_s` after the supervisor died."""
    child_code = CHILD.format(mechanism=mechanism, on_sigterm=on_sigterm)
    parent = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(SUPERVISOR), child_code], stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert parent.stdout.readline() == "holding\n"
        parent.kill()
        parent.wait()
        assert parent.stdout.readline() == "SIGTERM\n"
        assert not survivors(f"MECHANISM, ON_SIGTERM = {mechanism!r}", within_s=20.0), f"child {child} outlived it"
    finally:
        parent.kill()
        parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()


def test_a_child_whose_supervisor_is_already_gone_does_not_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lifeline, "_arm_death_signal", lambda signum: True)  # not on the test process itself
    read_end, write_end = os.pipe()
    try:
        with pytest.raises(CannotStart, match=r"the supervisor \(pid 1\) exited before this child started"):
            lifeline.hold(1.0, {lifeline.ENV_LIFELINE: f"1:{read_end}"})
    finally:
        os.close(read_end)
        os.close(write_end)


def test_a_child_outside_a_supervisor_holds_nothing() -> None:
    assert lifeline.hold(1.0, {}) is False


@pytest.mark.slow
async def test_a_killed_supervisor_leaves_no_child_under_load_and_the_next_run_starts(tmp_path: Path) -> None:
    """Before the fix the workers and the notifier went on with PPID 1, sharing the port with the next run."""
    service = Service(tmp_path, workers=2, notifier=True, shutdown_timeout_s=2.0)
    marker = str(service.config_path)
    await asyncio.to_thread(service.start)
    load = await ClickLoad(service.url, load_keyring(service.config), (13,), concurrency=4).start()
    try:
        assert service.process is not None
        first = service.process.pid
        assert len(alive_with(marker) - {first}) == 4  # two workers, the notifier and the reporter
        await eventually(lambda: list(load.statuses.values()).count(302) >= 20, timeout_s=30.0)
        os.kill(first, signal.SIGKILL)  # under running load
        await asyncio.to_thread(service.wait)
        left = await survivors_async(marker, within_s=2.0 + supervisor.GRACE_S + 5.0)
        assert not left, f"orphans of pid {first}: {sorted(left)}"

        answered = list(load.statuses.values()).count(302)
        await asyncio.to_thread(service.start)  # on the same data_dir and ports, at once
        await eventually(lambda: list(load.statuses.values()).count(302) >= answered + 20, timeout_s=30.0)
        assert "already in use" not in service.logs() and "in use by" not in service.logs()
    finally:
        await load.stop()
        assert service.stop() == 0, service.logs()
    assert not await survivors_async(marker, within_s=10.0)
