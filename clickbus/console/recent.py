"""The latest clicks as the notifier judged and delivered them: a bounded ring, fed in the notifier's process.

The notifier already decodes every click and records every outcome, so keeping the last
`RECENT_CLICKS` here costs a dictionary operation per click; reading them back from the log would
mean another reader of two topics in every edge process (see `clickbus.console.feed`).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from clickbus.ids import uuid7_ms
from clickbus.metrics import VALID

if TYPE_CHECKING:  # only a type here; importing records first would enter a cycle through the log package
    from clickbus.records import ClickRecord

RECENT_CLICKS = 50
PENDING = "pending"  # judged valid, no callback outcome yet


def landing_host(url: str) -> str:
    """The host of a landing URL, for display."""
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""


def _time_ms(click: ClickRecord) -> int:
    try:
        return uuid7_ms(click.click_id)
    except ValueError:
        return 0


class RecentClicks:
    """The last `size` clicks, newest last, each with its verdict and the last thing its callback did."""

    def __init__(self, size: int = RECENT_CLICKS) -> None:
        self.size = size
        # click id -> [click, verdict, callback]: the row is made in `rows`, once a second for 50 clicks,
        # rather than for every click judged
        self._clicks: OrderedDict[str, list[Any]] = OrderedDict()
        self.version = 0  # changes whenever the ring does: writers skip unchanged rings

    def click(self, click: ClickRecord, reason: str | None) -> None:
        """A click the notifier has judged (`reason` None: valid)."""
        clicks = self._clicks
        clicks[click.click_id] = [click, reason or VALID, PENDING if reason is None else ""]
        if len(clicks) > self.size:
            clicks.popitem(last=False)
        self.version += 1

    def outcome(self, click_id: str, outcome: str, status: int | None = None) -> None:
        """What a callback attempt did for a click still in the ring (others are ignored)."""
        entry = self._clicks.get(click_id)
        if entry is None or outcome == "invalid":
            return
        entry[2] = outcome if status is None else f"{outcome} ({status})"
        self.version += 1

    def rows(self) -> list[dict[str, Any]]:
        """The clicks, newest first."""
        return [
            {
                "time_ms": _time_ms(click),
                "click_id": click.click_id,
                "member": click.member_id,
                "creative": click.creative_id,
                "landing_host": landing_host(click.landing_url),
                "verdict": verdict,
                "callback": callback,
            }
            for click, verdict, callback in reversed(self._clicks.values())
        ]
