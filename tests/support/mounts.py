"""Real filesystem faults for tests: a small tmpfs (a disk that fills) and a read-only data directory.

`chmod` stops no root process, and the tests run as root, so read-only is a mount: a bind mount of
the directory over itself, remounted read-only. Files a process opened for writing before keep
writing to the directory beneath (the kernel refuses to make a mount read-only while it has
writers, and the new mount has none); every path opened since goes through the read-only one.
Both need root and a kernel that allows mounts: `mount_skip_reason` says why not, for a skip.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _mount(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["mount", *args], capture_output=True, check=False)


def mount_skip_reason() -> str | None:
    """Why this machine cannot run the mount tests, or None when it can."""
    if os.geteuid() != 0:
        return "mounting needs root"
    with tempfile.TemporaryDirectory() as probe:
        done = _mount("-t", "tmpfs", "-o", "size=64k", "tmpfs", probe)
        if done.returncode != 0:
            return f"cannot mount here: {done.stderr.decode().strip()}"
        subprocess.run(["umount", probe], check=False)
    return None


@contextlib.contextmanager
def tmpfs(directory: Path, size: str) -> Iterator[Path]:
    """`directory` on a tmpfs of `size` (e.g. "2m") while in use."""
    directory.mkdir(parents=True, exist_ok=True)
    done = _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory))
    assert done.returncode == 0, done.stderr.decode()
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


class ReadOnly:
    """Makes `directory` read-only (`on`) and writable again (`off`), as often as asked."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.mounted = False

    def on(self) -> None:
        bound = _mount("--bind", str(self.directory), str(self.directory))
        assert bound.returncode == 0, bound.stderr.decode()
        self.mounted = True
        readonly = _mount("-o", "remount,bind,ro", str(self.directory))
        assert readonly.returncode == 0, readonly.stderr.decode()
        probe = self.directory / ".readonly-check"
        try:
            probe.write_bytes(b"")
        except OSError as exc:
            assert exc.errno == errno.EROFS, exc
        else:
            raise AssertionError(f"{self.directory} is still writable")

    def off(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.directory)], check=True)
            self.mounted = False


@contextlib.contextmanager
def read_only(directory: Path) -> Iterator[ReadOnly]:
    """`directory` read-only for the block (`.off()` ends it sooner)."""
    switch = ReadOnly(directory)
    switch.on()
    try:
        yield switch
    finally:
        switch.off()


def fill(directory: Path) -> Path:
    """Write a file until the filesystem has not one byte left; the file."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as out:
        for chunk in (64 * 1024, 4096, 1):
            try:
                while True:
                    out.write(b"\0" * chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    return filler
