"""Which worker of `clickbus run --workers N` this process is: the supervisor names it in the environment.

Its own module, below the log and the logging setup that both read it, so neither imports the other for it.
"""

from __future__ import annotations

import os

ENV_WORKER = "CLICKBUS_WORKER"


def worker_name() -> str | None:
    """This process's worker index as the supervisor gave it, or None outside a supervisor."""
    return os.environ.get(ENV_WORKER)
