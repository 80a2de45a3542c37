"""The activity window on its own: thresholds, the sliding window, other partitions' windows, what is not judged."""

from __future__ import annotations

from clickbus.notifier.activity import ActivityWindow
from clickbus.records import ClickRecord
from tests.notifier.factory import click


def clicks(agents: list[int]) -> list[ClickRecord]:
    return [click(client_key="k", ad_key="1.5", user_agent=f"ua{n}") for n in agents]


def window(window_ms: int = 3_600_000) -> ActivityWindow:
    return ActivityWindow(window_ms, max_agents=3, max_clicks=10)


def test_the_fourth_agent_and_the_eleventh_click_are_too_much() -> None:
    w = window()
    judged = [w.check_and_add(c, 1000 + i) for i, c in enumerate(clicks([0, 1, 2, 3, 0, 1, 2, 4, 0, 1, 2, 2, 3]))]
    assert judged == [False] * 3 + [True] + [False] * 3 + [True] + [False] * 2 + [True] * 3


def test_agents_and_clicks_leave_the_window() -> None:
    w = window(1000)
    judged = [w.check_and_add(c, 1000 + 300 * i) for i, c in enumerate(clicks(list(range(8))))]
    assert judged == [False, False, False, True, False, False, False, True]  # each 4th agent after one left
    assert not w.check_and_add(clicks([9])[0], 10_000) and len(w) == 1  # all but the newest key dropped


def test_other_partitions_windows_count_too() -> None:
    mine, theirs = window(), window()
    for i, c in enumerate(clicks([0, 1, 2])):
        assert not theirs.check_and_add(c, 1000 + i)
    assert mine.check_and_add(clicks([3])[0], 2000, also=[theirs])
    assert not mine.check_and_add(clicks([1])[0], 2001, also=[theirs])


def test_server_clicks_and_records_without_an_address_are_not_judged() -> None:
    w = window()
    server = [click(source="server", client_key="k", ad_key="1.5", user_agent=f"ua{n}") for n in range(20)]
    bare = [click(ad_key="1.5", user_agent=f"ua{n}") for n in range(20)]
    assert not any(w.check_and_add(c, 1000) for c in server + bare) and len(w) == 0


def test_a_flood_keeps_bounded_memory_per_key() -> None:
    w = window()
    for i, c in enumerate(clicks(list(range(5000)))):
        w.check_and_add(c, 1000 + i)
    assert len(w) == 1
    _, agents = w._view(next(iter(w._keys)))
    assert len(agents) == 3
