"""The data directory (`data_dir`): made at start if missing, refused in one line when it cannot hold the files.

A `data_dir` that is a file, or one where nothing can be created (under `/proc`, a missing directory on a
read-only mount), would otherwise fail deep inside whichever file is opened first, with a traceback. Checked
by the commands that write there, before anything else starts. An existing directory that is read-only now
(a disk remounted read-only after an error) is a state, not a mistake: the service starts, says it is not
ready, and recovers once the directory takes writes again.
"""

from __future__ import annotations

import errno
import logging
import os
import tempfile
from pathlib import Path

from clickbus.errors import ConfigError

logger = logging.getLogger(__name__)

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
        if exc.errno == errno.EROFS and path.is_dir():  # the log's own probe reports it, and sees it recover
            logger.warning("%s %s is read-only now: not ready until it takes writes", KEY, path)
            return path
        raise ConfigError([f"{KEY}: cannot use {path} ({exc.strerror or exc})"]) from None
    os.close(fd)
    os.unlink(probe)
    return path
