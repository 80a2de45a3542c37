"""A report request, as `clickbus report` and `GET /v1/reports` both take it: parsed and checked once.

Every problem names what is wrong (`unknown dimension: colour`), and the CLI and the HTTP API say it
with the same words (exit 2, or 400).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from clickbus.reports.port import Query
from clickbus.reports.schema import DIMENSIONS, TEXT_DIMENSIONS
from clickbus.reports.window import QueryError, hour_floor, kept_since, parse_time

GRAINS = ("hour", "day", "month")
FORMATS = ("table", "csv", "json")
TIME_PARAMETERS = ("since", "until")
OTHER_PARAMETERS = ("by", "format")
PARAMETERS = (*TIME_PARAMETERS, *OTHER_PARAMETERS, *DIMENSIONS)
DEFAULT_SINCE = "24h"
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


@dataclass(frozen=True, slots=True)
class ReportRequest:
    """What to report: the range asked, what it was clipped to, the grouping, the filters, the format."""

    since: int  # as asked
    until: int
    kept_since: int
    by: tuple[str, ...]  # as asked: dimensions and at most one grain
    format: str
    query: Query

    @property
    def clipped(self) -> bool:
        """Whether the range asked reaches past what retention keeps."""
        return self.since < self.kept_since

    @property
    def grain(self) -> str | None:
        return self.query.grain

    @property
    def dimensions(self) -> tuple[str, ...]:
        return tuple(name for name in self.by if name not in GRAINS)


def parse_request(
    params: Mapping[str, Sequence[str]], *, retention_months: int, now: float | None = None, default_format: str
) -> ReportRequest:
    """Check every parameter (`by` may repeat or be comma-separated); raise `QueryError` naming the first bad one."""
    now = time.time() if now is None else now
    for name in params:
        if name not in PARAMETERS:
            raise QueryError(f"unknown filter: {name} (filters: {', '.join(DIMENSIONS)})")
    since = parse_time("since", _one(params, "since") or DEFAULT_SINCE, now)
    until_text = _one(params, "until")
    until = parse_time("until", until_text, now) if until_text else int(now) + 1
    if until <= since:
        raise QueryError("until: must be after since")
    by = _by(params.get("by", ()))
    format_ = _one(params, "format") or default_format
    if format_ not in FORMATS:
        raise QueryError(f"unknown format: {format_} (expected {', '.join(FORMATS)})")
    kept = kept_since(now, retention_months)
    grains = [name for name in by if name in GRAINS]
    query = Query(
        since=max(hour_floor(since), kept),
        until=until,
        by=tuple(name for name in by if name not in GRAINS),
        grain=grains[0] if grains else None,
        filters=tuple((name, _filter(name, text)) for name in DIMENSIONS if (text := _one(params, name)) is not None),
    )
    return ReportRequest(since, until, kept, by, format_, query)


def _one(params: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = params.get(name, ())
    if len(values) > 1:
        raise QueryError(f"{name}: given more than once")
    return values[0] if values else None


def _by(values: Sequence[str]) -> tuple[str, ...]:
    names: list[str] = []
    for value in values:
        for name in filter(None, (part.strip() for part in value.split(","))):
            if name not in DIMENSIONS and name not in GRAINS:
                raise QueryError(f"unknown dimension: {name} (dimensions: {', '.join((*DIMENSIONS, *GRAINS))})")
            if name not in names:
                names.append(name)
    if sum(name in GRAINS for name in names) > 1:
        raise QueryError("by: at most one of hour, day, month")
    return tuple(names)


def _filter(name: str, text: str) -> int | str:
    if name in TEXT_DIMENSIONS:
        return text
    if name == "test":
        if text.lower() in _TRUE:
            return 1
        if text.lower() in _FALSE:
            return 0
        raise QueryError("test: expected true or false")
    try:
        return int(text)
    except ValueError:
        raise QueryError(f"{name}: expected an integer") from None
