"""Builders shared by the notifier tests: clicks, and appending them to a log."""

from __future__ import annotations

import itertools
import time
from typing import Any

from clickbus.ids import uuid7
from clickbus.log.port import Log, Topic
from clickbus.records import ClickRecord, device_key, xandr_timestamp

BROWSER_UA = "Mozilla/5.0 (Macintosh; U; Intel Mac OS X 10.5; en-US; rv:1.9.0.4) Gecko/2008102920 Firefox/3.0.4"
CRAWLER_UA = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
_auctions = itertools.count(677373076784237441)


def click(member_id: int = 13, *, user: int | None = None, **changes: Any) -> ClickRecord:
    """A valid click with a fresh id and auction (so a distinct dedup key unless `user` repeats)."""
    auction = next(_auctions)
    ua = changes.pop("user_agent", BROWSER_UA)
    fields: dict[str, Any] = {
        "click_id": uuid7(),
        "timestamp": xandr_timestamp(time.time()),
        "auction_id_64": auction,
        "member_id": member_id,
        "user_id_64": user if user is not None else auction,
        "referer_url": "sports.yahoo.com",
        "user_agent": ua,
        "userdata_json": '{"segments":[2]}',
        "custom_notify_data": "cnd",
        "test": False,
        "source": "redirect",
        "creative_id": 77,
        "landing_url": "https://advertiser.example/landing",
        "client_ip": "203.0.113.0",
        "device": device_key(ua),
    }
    fields.update(changes)
    return ClickRecord(**fields)


async def append(log: Log, *records: ClickRecord) -> None:
    for record in records:
        await log.append(Topic.CLICKS, record.dedup_key(), record.to_json(), record.headers())
