"""Which processes are alive, read from /proc: for the tests that check no child outlives its supervisor."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

POLL_S = 0.1


def alive_with(marker: str) -> set[int]:
    """Live processes (zombies excluded) whose command line holds `marker`, such as a run's config path."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
        except OSError:  # gone while we looked
            continue
        if state != "Z" and any(marker.encode() in arg for arg in argv):
            found.add(int(entry.name))
    return found


def survivors(marker: str, within_s: float) -> set[int]:
    """The processes with `marker` still alive after waiting up to `within_s` seconds for them all to end."""
    deadline = time.monotonic() + within_s
    while (found := alive_with(marker)) and time.monotonic() < deadline:
        time.sleep(POLL_S)
    return found


async def survivors_async(marker: str, within_s: float) -> set[int]:
    """`survivors` for an event loop that must keep running meanwhile (bidder stubs answer in it)."""
    return await asyncio.to_thread(survivors, marker, within_s)
