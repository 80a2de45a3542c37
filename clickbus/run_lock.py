"""One `clickbus run` per data directory: an exclusive `flock` on `<data_dir>/run.lock`, held while it runs.

Two runs on one data directory would share its log partitions' neighbours, its consumer group and
its spool, and each would take the other's clicks for its own. The lock file names its holder's pid,
so that the run refused can say who holds it. The kernel drops the lock when its holder exits,
SIGKILL included: a data directory left by a dead run is free again at once.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path

from clickbus.errors import CannotStart

LOCK_NAME = "run.lock"


def hold_data_dir(data_dir: Path) -> int:
    """Take `data_dir` for this process (creating it), or raise `CannotStart` naming the holder; the lock's fd."""
    path = data_dir / LOCK_NAME
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = _open(path)
    except OSError as exc:
        raise CannotStart(f"data_dir {data_dir}: cannot take {LOCK_NAME}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise CannotStart(f"data_dir {data_dir} is in use by another clickbus run (pid {holder})") from None
    with contextlib.suppress(OSError):  # read-only now: held all the same, only the pid is not written
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _open(path: Path) -> int:
    """The lock file, created if missing; read-only on a read-only `data_dir` (a `flock` needs no write access)."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        if exc.errno != errno.EROFS or not path.exists():
            raise
        return os.open(path, os.O_RDONLY)


def _holder(fd: int) -> str:
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return text if text.isdigit() else "unknown"
