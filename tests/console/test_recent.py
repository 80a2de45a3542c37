"""The latest clicks the console shows: a ring of 50, each click's verdict and what its callback did."""

from __future__ import annotations

from clickbus.console.recent import PENDING, RECENT_CLICKS, RecentClicks, landing_host
from clickbus.ids import uuid7_ms
from tests.notifier.factory import click


def test_keeps_the_newest_clicks_newest_first() -> None:
    ring = RecentClicks()
    clicks = [click(creative_id=n) for n in range(RECENT_CLICKS + 5)]
    for one in clicks:
        ring.click(one, None)
    rows = ring.rows()
    assert [r["creative"] for r in rows] == [c.creative_id for c in reversed(clicks[5:])]
    assert rows[0]["time_ms"] == uuid7_ms(clicks[-1].click_id) and rows[0]["verdict"] == "valid"
    assert rows[0]["callback"] == PENDING


def test_outcomes_update_clicks_still_in_the_ring() -> None:
    ring = RecentClicks(size=2)
    first, second, third = click(), click(), click()
    ring.click(first, None)
    ring.click(second, "duplicate")
    ring.outcome(first.click_id, "retry", 503)
    ring.outcome(second.click_id, "invalid")  # the verdict already says it
    assert [(r["verdict"], r["callback"]) for r in ring.rows()] == [("duplicate", ""), ("valid", "retry (503)")]
    ring.click(third, None)
    version = ring.version
    ring.outcome(first.click_id, "delivered", 200)  # fell out of the ring: nothing to update
    assert ring.version == version and len(ring.rows()) == 2


def test_landing_host() -> None:
    assert [landing_host(u) for u in ("https://Shop.Example:8443/x", "not a url", "http://[::1/")] == [
        "shop.example",
        "",
        "",
    ]
