"""The supervisor's watch survives a child it cannot start: logged with its traceback, counted, tried again later.

Before #16 the exception (here: the child's program is missing; in life EAGAIN or ENOMEM from fork) left
`Supervisor.run` and the supervisor died with a traceback, its other children orphaned.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support.waiting import POLL_S

SUPERVISE = """
import os, sys
from clickbus import runtime  # before logging_setup, as the CLI imports them (logging_setup first is a cycle)
from clickbus import logging_setup
from clickbus.config import from_mapping
from clickbus.supervisor import ChildSpec, Supervisor
logging_setup.configure("info")
runtime.share_metrics(from_mapping({}, env={}), first=True)
specs = [ChildSpec("missing", (sys.argv[1],), {})]
sys.exit(Supervisor(specs, os.environ, 1.0).run())
"""


def test_a_child_that_cannot_start_is_tried_again_and_sigterm_still_stops_cleanly(tmp_path: Path) -> None:
    errors = tmp_path / "stderr.log"
    with errors.open("wb") as err:
        process = subprocess.Popen([sys.executable, "-c", SUPERVISE, str(tmp_path / "no-such-program")], stderr=err)
    try:
        deadline = time.monotonic() + 20
        while errors.read_text().count("background task supervisor-watch failed") < 3:
            assert process.poll() is None, errors.read_text()  # before: died at the first failure
            assert time.monotonic() < deadline, errors.read_text()
            time.sleep(POLL_S)
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0, errors.read_text()
    finally:
        process.kill()
        process.wait()
    logs = errors.read_text()
    assert "FileNotFoundError" in logs and "starting missing again in" in logs
    assert all(line.startswith("{") for line in logs.splitlines())  # log lines only: no traceback printed at exit
