"""Writer locks: one writing process per directory (an embedded log partition, a Kafka spool).

A directory is held by whoever holds an exclusive `flock` on its `writer.lock`. The
kernel drops the lock when its holder exits, SIGKILL included, so a directory left by a
dead process is free again at once and needs no cleaning up. A process that finds its
preferred directory held takes the next free one of the same family.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from clickbus.private_files import PRIVATE_FILE, make_dirs

LOCK_NAME = "writer.lock"
MAX_WRITERS = 1024  # how far past its preferred index a process looks for a free directory


@dataclass(frozen=True, slots=True)
class Held:
    """A directory this process holds the writer lock of, and its index in its family."""

    index: int
    directory: Path
    fd: int


def try_lock(directory: Path) -> int | None:
    """Create `directory` if needed (durably) and take its writer lock: the lock's fd, or None if it is held."""
    created = not directory.exists()
    make_dirs(directory)
    if created:
        fsync_dir(directory.parent)
    return try_lock_file(directory / LOCK_NAME)


def lock_first_free(place: Callable[[int], Path], preferred: int) -> Held | None:
    """Hold the first free directory `place(i)` for `i` from `preferred` on; None if every one is held."""
    for index in range(preferred, preferred + MAX_WRITERS):
        directory = place(index)
        fd = try_lock(directory)
        if fd is not None:
            return Held(index, directory, fd)
    return None


def fsync_dir(path: Path) -> None:
    """Make the names in directory `path` durable (a new file or subdirectory)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def try_lock_file(path: Path) -> int | None:
    """Take an exclusive `flock` on `path` (creating it and its directory): the lock's fd, or None if it is held."""
    make_dirs(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd
