"""A server-click key's `rate_per_s` holds for the whole host, however many workers serve it."""

from __future__ import annotations

import hashlib
import http.client
import math
import time
from pathlib import Path

import pytest

from clickbus.edge.buckets import SLOT, FileBuckets, MemoryBuckets
from tests.support.service import Service

KEY = "cbk_rate-limited-key"
RATE = 5.0


@pytest.mark.parametrize(
    ("takes", "allowed"),
    [
        ([("a", 100.0), ("b", 100.0), ("a", 100.0)], [True, True, False]),  # burst 2 shared by both workers
        ([("a", 100.0), ("b", 100.0), ("b", 100.5), ("a", 100.5)], [True, True, True, False]),  # 1 token per 0.5 s
        ([("a", 100.0), ("a", 100.0), ("b", 200.0), ("a", 200.0), ("b", 200.0)], [True, True, True, True, False]),
    ],
)
def test_workers_sharing_the_file_share_one_bucket(
    tmp_path: Path, takes: list[tuple[str, float]], allowed: list[bool]
) -> None:
    workers = {name: FileBuckets(tmp_path / "buckets", slots=2) for name in "ab"}
    try:
        assert [workers[w].take(1, now, rate=2.0, burst=2.0).allowed for w, now in takes] == allowed
        assert workers["a"].take(0, 100.0, rate=2.0, burst=2.0).allowed  # another key, its own slot
    finally:
        for buckets in workers.values():
            buckets.close()


@pytest.mark.parametrize("damaged", [(math.nan, 50.0), (math.inf, 50.0), (1e9, 50.0), (5.0, 1e12), (-3.0, 50.0)])
def test_a_damaged_or_stale_slot_never_gives_more_than_a_burst(tmp_path: Path, damaged: tuple[float, float]) -> None:
    (tmp_path / "buckets").write_bytes(SLOT.pack(*damaged))
    buckets = FileBuckets(tmp_path / "buckets", slots=1)
    try:
        granted = sum(buckets.take(0, 100.0, rate=2.0, burst=2.0).allowed for _ in range(10))
    finally:
        buckets.close()
    assert granted <= 2


def test_memory_buckets_start_full_and_refill_at_the_rate() -> None:
    buckets = MemoryBuckets(1)
    assert [buckets.take(0, 10.0, rate=1.0, burst=1.0).allowed for _ in range(2)] == [True, False]
    assert buckets.take(0, 11.0, rate=1.0, burst=1.0).allowed


def _click(port: int) -> int:
    """One server click on a fresh connection (so that the kernel picks a worker for each)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        body = b'{"campaignId": 1, "placement": "p"}'
        headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json", "Connection": "close"}
        connection.request("POST", "/api/v1/campaigns/click", body=body, headers=headers)
        return connection.getresponse().status
    finally:
        connection.close()


@pytest.mark.slow
def test_rate_holds_across_two_workers(tmp_path: Path) -> None:
    digest = hashlib.sha256(KEY.encode()).hexdigest()
    extra = (
        f'[campaigns.1]\nmember_id = 13\nplacements = ["p"]\n[api_keys.pub]\nsha256 = "{digest}"\nrate_per_s = {RATE}\n'
    )
    service = Service(tmp_path, workers=2, extra=extra).start()
    try:
        started = time.monotonic()
        statuses = [_click(service.port) for _ in range(60)]
        elapsed = time.monotonic() - started
    finally:
        assert service.stop() == 0, service.logs()
    allowed = statuses.count(200)
    most = RATE + RATE * elapsed + 1  # one burst, the refill while the test ran, one for rounding
    print(f"\nrate limit, 2 workers: {len(statuses)} clicks in {elapsed:.2f}s, {allowed} allowed (at most {most:.1f})")
    assert set(statuses) <= {200, 429}
    assert 0 < allowed <= most
