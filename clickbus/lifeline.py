"""The line from `clickbus run --workers N` to its children: no child outlives its supervisor.

Two mechanisms, because each can miss:
- the kernel's parent-death signal (Linux `prctl(PR_SET_PDEATHSIG)`): the child gets SIGTERM when
  its supervisor dies, SIGKILL included, and drains as on any stop. It is armed only once the
  child runs, it is sent when the *thread* that forked the child ends (so the supervisor starts
  children from its main thread only), and it does not exist off Linux;
- a pipe: the supervisor holds its write end for as long as it lives, every child inherits the
  read end and watches it on a thread. However the supervisor goes, the read ends. Where the
  death signal is not armed this sends the SIGTERM; and a child still running `stop_within_s`
  after that (a stuck drain) exits at once, so that nothing lingers as an orphan either way.

A child whose supervisor died before the signal was armed finds another parent and stops at once.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping

from clickbus.errors import CannotStart

logger = logging.getLogger(__name__)

ENV_LIFELINE = "CLICKBUS_LIFELINE"  # "<supervisor pid>:<read end>", set by the supervisor on its children
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
EXIT_ORPHANED = 3


class Lifeline:
    """The supervisor's end: a pipe whose write end closes only when the supervisor is gone."""

    def __init__(self) -> None:
        self.read_fd, self._write_fd = os.pipe()  # both non-inheritable; children get the read end by `pass_fds`

    def env(self) -> dict[str, str]:
        return {ENV_LIFELINE: f"{os.getpid()}:{self.read_fd}"}


def hold(stop_within_s: float, env: Mapping[str, str] = os.environ) -> bool:
    """In a supervised child: stop when the supervisor dies (see the module's text); False when not supervised."""
    text = env.get(ENV_LIFELINE)
    if not text:
        return False
    supervisor, _, fd_text = text.partition(":")
    fd = int(fd_text)
    os.set_inheritable(fd, False)  # nothing this process starts holds the line
    armed = _arm_death_signal(signal.SIGTERM)
    if os.getppid() != int(supervisor):
        raise CannotStart(f"the supervisor (pid {supervisor}) exited before this child started")
    watcher = threading.Thread(target=_watch, args=(fd, armed, stop_within_s), name="clickbus-lifeline", daemon=True)
    watcher.start()
    return True


def _arm_death_signal(signum: int) -> bool:
    """Ask the kernel for `signum` when the parent dies; False where that cannot be had."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)) == 0
    except (OSError, AttributeError):  # no prctl (a libc without it, a sandbox that forbids it): the pipe alone
        return False


def _watch(fd: int, armed: bool, stop_within_s: float) -> None:
    while os.read(fd, 1):  # the supervisor never writes: this returns only at end-of-file, when it is gone
        pass
    logger.warning("the supervisor is gone: stopping")
    if not armed:
        os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(stop_within_s)
    logger.error("still running %.1fs after the supervisor died: exiting now", stop_within_s)
    os._exit(EXIT_ORPHANED)
