"""The supervisor of `clickbus run --workers N`: starts the worker processes, forwards signals, restarts.

Each worker binds the same address with SO_REUSEPORT, so the kernel spreads connections over
them. Processes that must run once per service (the notifier) are extra children, named by
`extra_children`. On the first SIGTERM/SIGINT every child is sent SIGTERM and given
`edge.shutdown_timeout_s` (plus a grace) to drain; a second signal kills them and exits.
A child that dies while the service runs is restarted, with a growing delay if it keeps dying.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import FrameType

from clickbus.metrics import mark_process_dead

logger = logging.getLogger(__name__)

POLL_S = 0.05
GRACE_S = 5.0
STABLE_S = 30.0  # a child that lived this long has its restart delay reset
MAX_DELAY_S = 30.0
EXIT_FORCED = 1


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """One process to keep running: a name for the logs, its command line and extra environment."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str]


def clickbus_argv(*args: str) -> tuple[str, ...]:
    """The command line of a `clickbus` subcommand under this interpreter."""
    return (sys.executable, "-m", "clickbus", *args)


def extra_children(config_args: Sequence[str], *, reports: bool = True) -> list[ChildSpec]:
    """Processes that run once beside the edge workers: the notifier, a single group member, and the reporter."""
    children = [ChildSpec("notifier", clickbus_argv("notifier", *config_args), {})]
    if reports:
        children.append(ChildSpec("reporter", clickbus_argv("reporter", *config_args), {}))
    return children


class _Child:
    def __init__(self, spec: ChildSpec, base_env: Mapping[str, str]) -> None:
        self.spec = spec
        self.env = {**base_env, **spec.env}
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.delay_s = 0.0
        self.start_after = 0.0

    def start(self) -> None:
        # Its own process group: a terminal's Ctrl-C reaches only the supervisor, which forwards it once.
        self.process = subprocess.Popen(self.spec.argv, env=self.env, process_group=0)
        self.started_at = time.monotonic()
        logger.info("started %s", self.spec.name, extra={"child": self.spec.name, "child_pid": self.process.pid})

    def send(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)

    def reap(self) -> int | None:
        """The exit status if the child has just exited (its metrics marked dead), else None."""
        if self.process is None or (code := self.process.poll()) is None:
            return None
        mark_process_dead(self.process.pid)
        self.process = None
        return code


class Supervisor:
    """Keeps a set of child processes running until told to stop."""

    def __init__(self, specs: Sequence[ChildSpec], base_env: Mapping[str, str], stop_timeout_s: float) -> None:
        self.children = [_Child(spec, base_env) for spec in specs]
        self.stop_timeout_s = stop_timeout_s
        self.deadline: float | None = None
        self.failed = False

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.deadline is not None:
            logger.warning("second %s: killing every child", signal.Signals(signum).name)
            for child in self.children:
                child.send(signal.SIGKILL)
            sys.exit(EXIT_FORCED)
        logger.info("%s: stopping %d children", signal.Signals(signum).name, len(self.children))
        self.deadline = time.monotonic() + self.stop_timeout_s + GRACE_S
        for child in self.children:
            child.send(signal.SIGTERM)

    def run(self) -> int:
        """Run until a stop signal and every child has exited; 0 when every child stopped cleanly."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        for child in self.children:
            child.start()
        while self._tick():
            time.sleep(POLL_S)
        return 1 if self.failed else 0

    def _tick(self) -> bool:
        now = time.monotonic()
        for child in self.children:
            code = child.reap()
            if code is not None:
                self._exited(child, code, now)
            elif child.process is None and self.deadline is None and now >= child.start_after:
                child.start()
        if self.deadline is None:
            return True
        if now > self.deadline:
            logger.error("children still running after the shutdown limit: killing them")
            for child in self.children:
                child.send(signal.SIGKILL)
        return any(child.process is not None for child in self.children)

    def _exited(self, child: _Child, code: int, now: float) -> None:
        if self.deadline is not None:
            self.failed |= code not in (0, -signal.SIGTERM)
            logger.info("%s exited (%d)", child.spec.name, code, extra={"child": child.spec.name})
            return
        lived = now - child.started_at
        child.delay_s = 0.5 if lived >= STABLE_S or child.delay_s == 0 else min(MAX_DELAY_S, child.delay_s * 2)
        child.start_after = now + child.delay_s
        logger.error(
            "%s exited (%d); restarting in %.1fs",
            child.spec.name,
            code,
            child.delay_s,
            extra={"child": child.spec.name},
        )
