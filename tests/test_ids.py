"""UUIDv7 ids: ordered within a process even inside one millisecond, and not guessable from `random`."""

from __future__ import annotations

import os
import random

import pytest

from clickbus.ids import uuid7, uuid7_ms


def _fresh_ms() -> int:
    """A millisecond later than any id minted so far in this process (ids never go back in time)."""
    return uuid7_ms(uuid7()) + 1


@pytest.mark.parametrize("count", [2, 1000, 4096, 10_000])
def test_ids_minted_in_one_millisecond_keep_their_order(count: int) -> None:
    ms = _fresh_ms()
    ids = [uuid7(now_ns=ms * 1_000_000) for _ in range(count)]
    assert ids == sorted(ids) and len(set(ids)) == count
    assert uuid7_ms(ids[0]) == ms
    # the 12-bit counter starts low enough to count at least 3072 ids before borrowing the next millisecond
    assert {uuid7_ms(i) for i in ids[:3072]} == {ms}
    assert all(i[14] == "7" and i[19] in "89ab" for i in ids)


def test_ids_do_not_follow_the_random_module_seed() -> None:
    ms = _fresh_ms()
    random.seed(1234)
    first = uuid7(now_ns=ms * 1_000_000)
    random.seed(1234)
    second = uuid7(now_ns=(ms + 1) * 1_000_000)  # a new millisecond: counter seed and rand_b drawn afresh
    assert first[15:] != second[15:]  # all but timestamp and version


def test_random_bits_are_spread() -> None:
    ids = [uuid7() for _ in range(2000)]
    rand_b = [int(i[19:].replace("-", ""), 16) & ((1 << 62) - 1) for i in ids]
    assert len(set(rand_b)) == len(ids)
    ones = sum(bin(r).count("1") for r in rand_b) / (62 * len(ids))
    assert 0.48 < ones < 0.52


def test_a_forked_child_never_mints_from_its_parents_random_bytes() -> None:
    """Random bytes are read for many ids at once: a child forked with some unused must read its own."""
    ms = _fresh_ms()
    uuid7(now_ns=ms * 1_000_000)  # the parent holds unused random bytes now
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: mint one id at the next millisecond and say it
        try:
            os.write(writer, uuid7(now_ns=(ms + 1) * 1_000_000).encode())
        finally:
            os._exit(0)
    os.close(writer)
    with os.fdopen(reader) as pipe:
        child = pipe.read()
    os.waitpid(pid, 0)
    parent = uuid7(now_ns=(ms + 1) * 1_000_000)
    assert uuid7_ms(child) == uuid7_ms(parent) == ms + 1
    assert child[15:] != parent[15:]  # counter seed and rand_b: drawn afresh, not shared
