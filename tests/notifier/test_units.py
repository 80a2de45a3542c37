"""Pure parts of the notifier: schedule, Retry-After, breaker, offsets, dedup window, config."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clickbus import config as configuration
from clickbus.errors import ConfigError
from clickbus.notifier.breaker import Breaker
from clickbus.notifier.dedup import DedupWindow
from clickbus.notifier.delivery import Verdict, classify
from clickbus.notifier.offsets import OffsetTracker
from clickbus.notifier.retry import Schedule, parse_retry_after

NOW = 1_800_000_000.0


@pytest.mark.parametrize(("attempt", "low", "high"), [(1, 0.5, 1.0), (2, 1.0, 2.0), (5, 8.0, 16.0), (30, 30.0, 60.0)])
def test_backoff_doubles_with_jitter_up_to_cap(attempt: int, low: float, high: float) -> None:
    schedule = Schedule(base_s=1.0, max_delay_s=60.0, horizon_s=86400.0)
    delays = [schedule.delay_s(attempt, None, random.Random(seed)) for seed in range(50)]
    assert all(low <= d <= high for d in delays)
    assert len(set(delays)) > 1


def test_retry_after_wins_over_shorter_backoff() -> None:
    schedule = Schedule(base_s=1.0, max_delay_s=60.0, horizon_s=86400.0)
    assert schedule.delay_s(1, 120.0, random.Random(1)) == 120.0


def test_horizon_ends_the_schedule() -> None:
    schedule = Schedule(base_s=1.0, max_delay_s=60.0, horizon_s=100.0)
    assert schedule.next_due_ms(0, 50_000, 40.0) == 90_000
    assert schedule.next_due_ms(0, 90_000, 40.0) is None


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("", None),
        ("7", 7.0),
        (" 30 ", 30.0),
        ("-1", None),
        ("soon", None),
        (format_datetime(datetime.fromtimestamp(NOW + 90, UTC), usegmt=True), 90.0),
        (format_datetime(datetime.fromtimestamp(NOW - 90, UTC), usegmt=True), 0.0),
        ("99999999999", 7 * 86400.0),
    ],
)
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, NOW) == seconds


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, Verdict.DELIVERED),
        (204, Verdict.DELIVERED),
        (301, Verdict.REJECTED),
        (400, Verdict.REJECTED),
        (404, Verdict.REJECTED),
        (408, Verdict.RETRY),
        (410, Verdict.GONE),
        (429, Verdict.RETRY),
        (500, Verdict.RETRY),
        (503, Verdict.RETRY),
    ],
)
def test_classify(status: int, verdict: Verdict) -> None:
    assert classify(status) is verdict


def test_breaker_opens_probes_and_closes() -> None:
    now = [0.0]
    breaker = Breaker(threshold=2, cooldown_s=10.0, clock=lambda: now[0])
    breaker.failure()
    assert breaker.allow()
    breaker.failure()
    assert not breaker.allow()
    now[0] = 10.0
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # only one at a time
    breaker.failure()  # probe failed: open twice as long
    now[0] = 25.0
    assert not breaker.allow()
    now[0] = 30.0
    assert breaker.allow()
    breaker.success()
    assert breaker.allow() and breaker.allow() and not breaker.is_open


def test_offsets_commit_up_to_lowest_unfinished() -> None:
    tracker = OffsetTracker()
    tp = ("clicks", 0)
    for offset in (5, 6, 7, 8):
        tracker.start(tp, offset)
    tracker.finish(tp, 6)
    tracker.finish(tp, 8)
    assert tracker.committable() == {tp: 5}
    tracker.committed({tp: 5})
    assert tracker.committable() == {}
    tracker.finish(tp, 5)
    assert tracker.committable() == {tp: 7}
    tracker.finish(tp, 7)
    assert tracker.committable() == {tp: 9}
    tracker.reset(set())
    assert tracker.committable() == {}


@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 50)), max_size=200), st.integers(1, 100))
def test_dedup_window_matches_a_naive_model(events: list[tuple[int, int]], window_ms: int) -> None:
    window = DedupWindow(window_ms)
    expiry: dict[int, int] = {}
    now = 0
    for key, step in events:
        now += step
        expected = expiry.get(key, -1) > now
        assert window.check_and_add(str(key).encode(), now) is expected
        if not expected:
            expiry[key] = now + window_ms


def test_notifier_section_parses_and_names_bad_keys() -> None:
    parsed = configuration.from_mapping({"notifier": {"group": "g", "click_window_s": 10, "retry_horizon_s": 60}})
    assert (parsed.notifier.group, parsed.notifier.click_window_s, parsed.notifier.retry_horizon_s) == ("g", 10.0, 60.0)
    with pytest.raises(ConfigError) as caught:
        configuration.from_mapping({"notifier": {"click_window_s": -1, "retry_base_s": "x", "colour": 1}})
    assert caught.value.problems == [
        "notifier.click_window_s: expected a positive number, got -1.0",
        "notifier.retry_base_s: expected float, got 'x'",
        "notifier.colour: unknown key",
    ]


def test_bad_webhook_secret_fails_at_start() -> None:
    members = {"7": {"click_uri": "https://bidder.example/click", "secret": "whsec_%%%"}}
    with pytest.raises(ConfigError, match=r"members\.7\.secret"):  # as the configuration is read
        configuration.from_mapping({"members": members})
