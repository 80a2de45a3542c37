"""The supervisor of `clickbus run --workers N`: starts the worker processes, forwards signals, restarts.

The workers accept on listening sockets bound once for them and handed down
(`clickbus.edge.sockets`). Processes that must run once per service (the notifier) are extra
children, named by `extra_children`. On the first SIGTERM/SIGINT every child is sent SIGTERM and given
`edge.shutdown_timeout_s` (plus a grace) to drain; a second signal kills them and exits.
A child that dies while the service runs is restarted, with a growing delay if it keeps dying.
No child outlives the supervisor (`clickbus.lifeline`); children are started from the main thread
only, as the kernel's parent-death signal follows the thread that forked.
Children that serve (`ChildSpec.listens`) say when they listen, through a pipe named in their
environment (`tell_listening`); once every one of them has, the supervisor calls `on_listening`,
which `clickbus run` uses to print its "listening" line: not before, since on Kafka a worker
connects to the brokers before it listens.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType

from clickbus import tasks
from clickbus.lifeline import Lifeline
from clickbus.metrics import mark_process_dead

logger = logging.getLogger(__name__)

POLL_S = 0.05
GRACE_S = 5.0
STABLE_S = 30.0  # a child that lived this long has its restart delay reset
MAX_DELAY_S = 30.0
EXIT_FORCED = 1
ENV_LISTENING_FD = "CLICKBUS_LISTENING_FD"  # a child that listens writes its pid there once it does


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """One process to keep running: a name for the logs, its command line, extra environment and inherited fds."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    pass_fds: tuple[int, ...] = ()
    listens: bool = False  # says when it listens (see `tell_listening`)


def tell_listening() -> None:
    """Tell the supervisor, if this process has one, that it listens now (once: the pipe is closed after)."""
    fd = os.environ.pop(ENV_LISTENING_FD, "")
    if fd.isdigit():
        with contextlib.suppress(OSError):  # a supervisor gone meanwhile: nobody to tell
            os.write(int(fd), f"{os.getpid()}\n".encode())
            os.close(int(fd))


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
    def __init__(self, spec: ChildSpec, base_env: Mapping[str, str], lifeline: Lifeline) -> None:
        self.spec = spec
        self.env = {**base_env, **spec.env, **lifeline.env()}
        self.pass_fds = (*spec.pass_fds, lifeline.read_fd)
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.delay_s = 0.0
        self.start_after = 0.0

    def start(self, listening_fd: int | None = None) -> None:
        # Its own process group: a terminal's Ctrl-C reaches only the supervisor, which forwards it once.
        env: Mapping[str, str] = self.env
        fds = self.pass_fds
        if listening_fd is not None and self.spec.listens:
            env, fds = {**self.env, ENV_LISTENING_FD: str(listening_fd)}, (*fds, listening_fd)
        self.process = subprocess.Popen(self.spec.argv, env=env, process_group=0, pass_fds=fds)
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

    def __init__(
        self,
        specs: Sequence[ChildSpec],
        base_env: Mapping[str, str],
        stop_timeout_s: float,
        on_listening: Callable[[], None] | None = None,
    ) -> None:
        self.lifeline = Lifeline()  # held, never closed, until this process exits
        self.children = [_Child(spec, base_env, self.lifeline) for spec in specs]
        self.stop_timeout_s = stop_timeout_s
        self.deadline: float | None = None
        self.failed = False
        self.watch_delay_s = 0.0
        self.on_listening = on_listening
        self._listening_pids: set[int] = set()
        self._heard = b""
        self._pipe: tuple[int, int] | None = None

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
        if self.on_listening is not None:
            self._pipe = os.pipe()
            os.set_blocking(self._pipe[0], False)
        try:
            while self._watch():  # its first tick starts every child
                time.sleep(POLL_S)
        finally:
            if self._pipe is not None:
                os.close(self._pipe[0])
                os.close(self._pipe[1])
        return 1 if self.failed else 0

    def _watch(self) -> bool:
        """One tick; one that fails (no fork: EAGAIN, ENOMEM) is logged, counted and tried again, later each time."""
        try:
            alive = self._tick()
        except Exception as exc:
            self.watch_delay_s = min(MAX_DELAY_S, self.watch_delay_s * 2 or POLL_S)
            tasks.report("supervisor-watch", exc, f"watching again in {self.watch_delay_s:.1f} s")
            time.sleep(self.watch_delay_s)
            return True
        self.watch_delay_s = 0.0
        return alive

    def _hear_listening(self) -> None:
        """Note the children that said they listen; once every listening child has, call `on_listening` once."""
        if self._pipe is None:
            return
        with contextlib.suppress(BlockingIOError):  # read even after: a full pipe would block restarted workers
            self._heard += os.read(self._pipe[0], 4096)
        *lines, self._heard = self._heard.split(b"\n")
        self._listening_pids.update(int(line) for line in lines if line.isdigit())
        if self.on_listening is None:
            return
        listeners = [c for c in self.children if c.spec.listens]
        if all(c.process is not None and c.process.pid in self._listening_pids for c in listeners):
            announce, self.on_listening = self.on_listening, None
            announce()

    def _tick(self) -> bool:
        now = time.monotonic()
        self._hear_listening()
        for child in self.children:
            code = child.reap()
            if code is not None:
                self._exited(child, code, now)
            elif child.process is None and self.deadline is None and now >= child.start_after:
                self._start(child, now)
        if self.deadline is None:
            return True
        if now > self.deadline:
            logger.error("children still running after the shutdown limit: killing them")
            for child in self.children:
                child.send(signal.SIGKILL)
        return any(child.process is not None for child in self.children)

    def _start(self, child: _Child, now: float) -> None:
        """Start `child`; one that cannot start (EAGAIN, ENOMEM, no program) is tried again later, the others go on."""
        try:
            child.start(self._pipe[1] if self._pipe is not None else None)
        except OSError as exc:
            child.delay_s = min(MAX_DELAY_S, child.delay_s * 2 or 0.5)
            child.start_after = now + child.delay_s
            tasks.report("supervisor-watch", exc, f"starting {child.spec.name} again in {child.delay_s:.1f} s")

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
