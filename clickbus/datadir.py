"""The data directory (`data_dir`): made at start if missing, refused in one line when it cannot hold the files.

A `data_dir` that is a file, or one where nothing can be created (under `/proc`, on a read-only mount), would
otherwise fail deep inside whichever file is opened first, with a traceback. Checked by the commands that
write there, before anything else starts.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from clickbus.errors import ConfigError

KEY = "data_dir"
MODE = 0o700  # it holds clicks (user agents, referers, user ids) and the generated signing key


def prepare(path: Path) -> Path:
    """`path`, created if missing, once a file can be made in it; ConfigError naming `data_dir` otherwise."""
    if path.exists() and not path.is_dir():
        raise ConfigError([f"{KEY}: {path} is not a directory"])
    try:
        path.mkdir(mode=MODE, parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".clickbus-probe-", dir=path)
    except OSError as exc:
        raise ConfigError([f"{KEY}: cannot use {path} ({exc.strerror or exc})"]) from None
    os.close(fd)
    os.unlink(probe)
    return path
