"""The cyclic garbage collector, tuned for a long-running server once it has started.

CPython's collector runs a young-generation pass every 700 net allocations and a full pass
whenever the objects promoted since the last one reach a quarter of the old generation. A
server allocates a few hundred objects per request (tasks, futures, frames, dicts); with the
defaults the notifier spent 130 µs of its 530 µs per delivery collecting (`gc.callbacks`,
`python -m bench.delivery`), half of it in full passes over everything loaded at start: the
modules, aiohttp, the user-agent parser's compiled patterns.

`settle` is called once a process serves:

- `gc.freeze()` moves everything alive after start-up into a permanent generation that no
  pass visits again (the standard library's advice for long-lived processes, and what
  Instagram's servers did, see "Dismissing Python Garbage Collection at Instagram");
- the young generation is collected after `YOUNG` net allocations rather than 700, so that
  the objects of requests in flight mostly die before a pass, instead of being traversed and
  promoted (and so triggering full passes).

Reference counting still frees almost everything at once; the collector is only for cycles
(aiohttp's and asyncio's tracebacks, mostly), of which a pass now waits for at most `YOUNG`
net allocations: a few megabytes.
"""

from __future__ import annotations

import gc
import logging

logger = logging.getLogger(__name__)

YOUNG = 50_000  # net allocations between young passes (CPython's default: 700)
MIDDLE = 20  # young passes between middle passes (10)
OLD = 100  # middle passes between full passes, besides CPython's own 25 % rule (10)


def settle() -> None:
    """Collect once, freeze what start-up left alive, and collect less often from now on."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG, MIDDLE, OLD)
    logger.debug("heap settled: %d objects frozen", gc.get_freeze_count())
