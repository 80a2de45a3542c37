"""Invalid traffic: which clicks and impressions must never be delivered as valid.

A record is invalid when the edge already said so (an expired token: `valid`
is false and `reason` set), when its user agent is a declared crawler
(the `crawlerdetect` list), when its client address has been too active on
its ad (see `activity`: reason `activity`), or when it duplicates a record seen
within the dedup window. Only valid records enter the dedup window, so a
crawler's click does not hide a person's; every click counts as activity.

Server-side clicks are exempt from the crawler check: the user agent they carry
is the publisher's server's (curl, python-requests, Go-http-client, ...), which
says nothing about the person who clicked. What does apply to them, the API
key and its rate limit, the edge has already checked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache

from crawlerdetect import CrawlerDetect  # type: ignore[import-untyped]

from clickbus.notifier.activity import ActivityWindow
from clickbus.notifier.dedup import DedupWindow
from clickbus.records import ClickRecord, ImpressionRecord, Reason, Source

EDGE_INVALID = "invalid"


def crawler_check(cache_size: int) -> Callable[[str], bool]:
    """`is_crawler(user_agent)`, cached per user agent in a bounded LRU (the regex scan is slow)."""
    detector = CrawlerDetect()

    @lru_cache(maxsize=cache_size)
    def is_crawler(user_agent: str) -> bool:
        return bool(detector.is_crawler(user_agent))

    return is_crawler


def verdict(
    record: ClickRecord | ImpressionRecord,
    key: bytes,
    ts_ms: int,
    *,
    is_crawler: Callable[[str], bool],
    window: DedupWindow | None,
    also: Sequence[DedupWindow] = (),
    activity: ActivityWindow | None = None,
    activity_also: Sequence[ActivityWindow] = (),
) -> str | None:
    """Why `record` is invalid, or None when it is valid (it then enters the window; `also` are only checked).

    Every click counts in `activity` (the other partitions' `activity_also` are only checked), whatever its verdict.
    """
    busy = (
        activity is not None
        and isinstance(record, ClickRecord)
        and activity.check_and_add(record, ts_ms, activity_also)
    )
    if not record.valid:
        return record.reason or EDGE_INVALID
    if record.source != Source.SERVER and is_crawler(record.user_agent):
        return Reason.BOT
    if busy:
        return Reason.ACTIVITY
    if window is not None and window.check_and_add(key, ts_ms, also):
        return Reason.DUPLICATE
    return None
