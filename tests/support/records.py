"""Reading what a log holds back, decoded, to check what the edge or the notifier wrote."""

from __future__ import annotations

from typing import Any

import orjson

from clickbus.config import Config
from clickbus.log import open_log
from clickbus.log.port import Log, Topic


async def records(log: Log, topic: str) -> list[dict[str, Any]]:
    """Every record of `topic` from the beginning, decoded."""
    return [orjson.loads(entry.value) async for entry in log.read(topic, from_beginning=True, follow=False)]


async def at_least(log: Log, topic: str, n: int) -> list[dict[str, Any]] | None:
    """The records of `topic` once it holds `n` or more, else None: a check for `eventually_async`."""
    found = await records(log, topic)
    return found if len(found) >= n else None


async def recorded(config: Config, topic: str = Topic.CLICKS) -> list[dict[str, Any]]:
    """Every record of `topic` in the log `config` names, opened just to read it (its writer may be stopped)."""
    return await records(open_log(config), topic)
