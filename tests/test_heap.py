"""The collector after `clickbus.heap.settle`: start-up frozen, young passes rarer, cycles still collected.

Each check runs in a fresh interpreter: the settings are process-wide, and the test process's own must not change.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])


def _run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.strip()


def test_settle_freezes_start_up_and_raises_the_young_threshold() -> None:
    out = _run(
        """
        import gc
        from clickbus import heap
        import clickbus.notifier  # a start-up's worth of modules
        heap.settle()
        print(gc.get_freeze_count() > 10_000, gc.get_threshold() == (heap.YOUNG, heap.MIDDLE, heap.OLD))
        """
    )
    assert out == "True True"


def test_cycles_made_after_settling_are_still_collected() -> None:
    """The collector is tuned, not off: a server making reference cycles for ever stays bounded."""
    out = _run(
        """
        import gc
        from clickbus import heap
        heap.settle()
        passes = []
        gc.callbacks.append(lambda phase, info: phase == "stop" and passes.append(info["collected"]))
        for _ in range(400_000):
            a, b = [], []
            a.append(b)
            b.append(a)  # garbage that only the collector frees
        print(len(passes) > 0, sum(passes) > 300_000, len(gc.get_objects()) < 3 * heap.YOUNG)
        """
    )
    assert out == "True True True"
