"""Builders shared by the notifier tests: clicks, configurations, log reads, waiting."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson

from clickbus import config as configuration
from clickbus.config import Config
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


def config(tmp_path: Path, members: Mapping[int, Mapping[str, Any]], **notifier: Any) -> Config:
    """A test configuration: members from `members`, fast notifier settings overridable by keyword."""
    settings = {"retry_base_s": 0.05, "retry_max_delay_s": 0.2, "commit_interval_s": 0.05, **notifier}
    raw = {
        "data_dir": str(tmp_path),
        "members": {str(k): {"allow_private": True, **v} for k, v in members.items()},
        "notifier": settings,
    }
    return configuration.from_mapping(raw, env={})


async def records(log: Log, topic: Topic) -> list[dict[str, Any]]:
    return [orjson.loads(e.value) async for e in log.read(topic, from_beginning=True, follow=False)]


async def eventually(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Wait until `check()` is truthy (returning it); fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.01)
    return result


async def eventually_async(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Like `eventually` for an async `check`."""
    deadline = time.monotonic() + timeout
    while not (result := await check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.02)
    return result
