"""Where the spools of one configured directory live: spool 0 is the directory, spool n its sibling `<name>-n`.

Spool 0 keeps the configured name because every process used that one directory
before each got a spool of its own: a spool written by an older release is spool 0
and is shipped after an upgrade like any other.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

SUFFIX = ".spool"


def family_member(root: Path, index: int) -> Path:
    """Spool `index` of the family configured at `root`: `root` itself for 0, else its sibling `<name>-<index>`."""
    return root if index == 0 else root.with_name(f"{root.name}-{index}")


def family(root: Path) -> list[Path]:
    """Every spool directory of the family that exists now, by index."""
    found = {0: root} if root.is_dir() else {}
    prefix = f"{root.name}-"
    with contextlib.suppress(FileNotFoundError):
        for path in root.parent.iterdir():
            index = path.name.removeprefix(prefix)
            if path.name.startswith(prefix) and index.isdigit() and path.is_dir():
                found[int(index)] = path
    return [found[index] for index in sorted(found)]


def has_segments(directory: Path) -> bool:
    """Whether `directory` holds spool segment files (records, or markers of shipped ones)."""
    return any(directory.glob(f"*{SUFFIX}"))
