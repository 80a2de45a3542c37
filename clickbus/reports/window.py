"""Time ranges of reports: parsing `--since`/`--until`, and where retention starts."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from clickbus.errors import ClickbusError

_RELATIVE = re.compile(r"(\d{1,6})([hd])")


class QueryError(ClickbusError):
    """A report request names something unknown or malformed; the message names it."""


def kept_since(now: float, retention_months: int) -> int:
    """The first hour kept: the start of the month `retention_months` before this one (UTC)."""
    today = datetime.fromtimestamp(now, UTC)
    months = today.year * 12 + today.month - 1 - retention_months
    return int(datetime(months // 12, months % 12 + 1, 1, tzinfo=UTC).timestamp())


def parse_time(name: str, text: str, now: float) -> int:
    """`24h`, `7d` (before now), `2026-12-03` (midnight UTC) or an ISO 8601 time; epoch seconds."""
    if match := _RELATIVE.fullmatch(text):
        amount, unit = int(match[1]), match[2]
        return int(now - amount * (3600 if unit == "h" else 86400))
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise QueryError(f"{name}: expected a date (2026-12-03), a time (2026-12-03T13:00Z), 24h or 7d") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp())


def iso(seconds: int) -> str:
    """`2026-12-03T13:00:00Z`."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def hour_floor(seconds: int) -> int:
    """The start of the hour `seconds` falls in."""
    return seconds - seconds % 3600
