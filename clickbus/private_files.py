"""Private files: the data directory holds user agents, referers, user ids and `userdata_json`.

Whatever clickbus creates there is its owner's alone: directories 0700, files 0600, and the
process umask (set by the command line) keeps every other file (SQLite's journals, a library's
temporary file) the same. An existing data directory open to other users is left as it is,
with one warning at start: changing an operator's modes is theirs to decide.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

logger = logging.getLogger(__name__)

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
PRIVATE_UMASK = 0o077
_OTHERS = stat.S_IRWXG | stat.S_IRWXO


def restrict_umask() -> int:
    """Create every later file and directory of this process (and its children) for its owner only; the old umask."""
    previous = os.umask(PRIVATE_UMASK)
    os.umask(previous | PRIVATE_UMASK)
    return previous


def make_dirs(path: Path) -> None:
    """`path` and every missing parent, each created 0700 (`Path.mkdir(parents=True)` gives parents the umask's)."""
    missing = []
    for directory in (path, *path.parents):
        if directory.is_dir():
            break
        missing.append(directory)
    for directory in reversed(missing):
        try:
            directory.mkdir(PRIVATE_DIR)
        except FileExistsError:
            if not directory.is_dir():
                raise
        else:
            os.chmod(directory, PRIVATE_DIR)  # whatever the umask took away, nothing more


def warn_if_shared(data_dir: Path) -> None:
    """One warning when an existing `data_dir` lets users other than its owner in."""
    try:
        mode = data_dir.stat().st_mode
    except OSError:
        return
    if mode & _OTHERS:
        logger.warning(
            "data_dir %s is readable by other users (mode %o): it holds user agents, referers and user ids;"
            " chmod 700 it",
            data_dir,
            stat.S_IMODE(mode),
        )
