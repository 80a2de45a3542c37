"""Giving back a token (a server click the log refused) never lets a key past its rate, in one worker or many."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from clickbus.edge.buckets import Buckets, FileBuckets, MemoryBuckets

RATE, BURST = 2.0, 2.0


def _workers(kind: str, tmp_path: Path) -> list[Buckets]:
    if kind == "memory":
        return [MemoryBuckets(1)]
    return [FileBuckets(tmp_path / "buckets", slots=1) for _ in range(3)]


@pytest.mark.parametrize("kind", ["memory", "file"])
@pytest.mark.parametrize("seed", range(5))
def test_taken_minus_given_back_stays_within_the_rate(tmp_path: Path, kind: str, seed: int) -> None:
    """Random takes, each given back with probability 1/2 (a refused click), over 10 simulated seconds."""
    draw = random.Random(seed)
    workers = _workers(kind, tmp_path)
    kept, now = 0, 100.0
    try:
        while now < 110.0:
            worker = draw.choice(workers)
            if worker.take(0, now, RATE, BURST).allowed:
                if draw.random() < 0.5:
                    worker.give_back(0, BURST)
                else:
                    kept += 1
            now += draw.uniform(0.0, 0.05)
        assert kept <= BURST + RATE * (now - 100.0)
        assert kept >= RATE * (now - 100.0) - 1  # and the given-back tokens were usable again
    finally:
        for worker in workers:
            worker.close()


def test_a_given_back_token_is_taken_again_at_once(tmp_path: Path) -> None:
    buckets = FileBuckets(tmp_path / "buckets", slots=1)
    try:
        assert buckets.take(0, 100.0, rate=0.01, burst=1.0).allowed
        assert not buckets.take(0, 100.0, rate=0.01, burst=1.0).allowed
        buckets.give_back(0, burst=1.0)
        buckets.give_back(0, burst=1.0)  # more than was taken: still at most a burst
        assert [buckets.take(0, 100.0, rate=0.01, burst=1.0).allowed for _ in range(2)] == [True, False]
    finally:
        buckets.close()
