"""Report rows as JSON, CSV or a terminal table: grouped store rows merged, their rates and percentiles read.

The store returns one row per group and reason (valid traffic has reason ""); a report row joins them.
Everything streams: rows are written as the store yields them, the totals last.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import orjson

from clickbus.records import Reason
from clickbus.reports.port import RawRow
from clickbus.reports.request import ReportRequest
from clickbus.reports.schema import BUCKETS, COUNTERS, DIMENSIONS, quantile
from clickbus.reports.window import iso

KNOWN_REASONS = (Reason.DUPLICATE, Reason.BOT, Reason.EXPIRED, Reason.ACTIVITY)
_TIME_FORMATS = {"hour": "%Y-%m-%dT%H:00:00Z", "day": "%Y-%m-%d", "month": "%Y-%m"}
_REASON_AT = 1 + len(DIMENSIONS)
_VALUES_AT = _REASON_AT + 1
COUNTER_FIELDS = (
    "impressions",
    "clicks",
    "ctr",
    "invalid_impressions",
    "invalid_clicks",
    "invalid",
    "ivt_rate",
    "delivered",
    "retried",
    "dead_lettered",
    "callback_p50_ms",
    "callback_p99_ms",
)


class Sums:
    """Counters of one report row (or of the totals), valid and invalid apart, and the latency histogram."""

    __slots__ = ("histogram", "invalid", "valid")

    def __init__(self) -> None:
        self.valid = [0] * len(COUNTERS)
        self.invalid: dict[str, list[int]] = {}
        self.histogram = [0] * BUCKETS

    def add(self, reason: str, values: tuple[Any, ...]) -> None:
        counters = self.valid if not reason else self.invalid.setdefault(reason, [0] * len(COUNTERS))
        for i in range(len(COUNTERS)):
            counters[i] += int(values[i] or 0)
        for i in range(BUCKETS):
            self.histogram[i] += int(values[len(COUNTERS) + i] or 0)

    def merge(self, other: Sums) -> None:
        for i, n in enumerate(other.valid):
            self.valid[i] += n
        for reason, counters in other.invalid.items():
            mine = self.invalid.setdefault(reason, [0] * len(COUNTERS))
            for i, n in enumerate(counters):
                mine[i] += n
        for i, n in enumerate(other.histogram):
            self.histogram[i] += n

    def fields(self) -> dict[str, Any]:
        impressions, clicks = self.valid[0], self.valid[1]
        invalid = {reason: c[0] + c[1] for reason, c in sorted(self.invalid.items())}
        seen = impressions + clicks + sum(invalid.values())
        every = [self.valid, *self.invalid.values()]  # callbacks are counted on valid rows; summed to be sure
        return {
            "impressions": impressions,
            "clicks": clicks,
            "ctr": round(clicks / impressions, 6) if impressions else None,
            "invalid_impressions": sum(c[0] for c in self.invalid.values()),
            "invalid_clicks": sum(c[1] for c in self.invalid.values()),
            "invalid": invalid,
            "ivt_rate": {reason: round(n / seen, 6) for reason, n in invalid.items()},
            "delivered": sum(c[2] for c in every),
            "retried": sum(c[3] for c in every),
            "dead_lettered": sum(c[4] for c in every),
            "callback_p50_ms": quantile(self.histogram, 0.5),
            "callback_p99_ms": quantile(self.histogram, 0.99),
        }


def label(grain: str, seconds: int) -> str:
    """An hour, day or month as reports name it: `2026-12-03T13:00:00Z`, `2026-12-03`, `2026-12`."""
    return datetime.fromtimestamp(seconds, UTC).strftime(_TIME_FORMATS[grain])


async def report_rows(
    request: ReportRequest, raw: AsyncIterator[RawRow], totals: Sums
) -> AsyncIterator[dict[str, Any]]:
    """Report rows (dimension fields, then `COUNTER_FIELDS`), adding each to `totals`."""
    wanted = [(name, 1 + DIMENSIONS.index(name)) for name in request.dimensions]
    current: tuple[Any, ...] | None = None
    sums = Sums()
    async for row in raw:
        group = row[:_REASON_AT]
        if current is not None and group != current:
            yield _row(request, wanted, current, sums)
            totals.merge(sums)
            sums = Sums()
        current = group
        sums.add(str(row[_REASON_AT]), row[_VALUES_AT:])
    if current is not None:
        yield _row(request, wanted, current, sums)
        totals.merge(sums)


def _row(request: ReportRequest, wanted: list[tuple[str, int]], group: tuple[Any, ...], sums: Sums) -> dict[str, Any]:
    row: dict[str, Any] = {}
    if request.grain is not None:
        row[request.grain] = label(request.grain, int(group[0]))
    for name, at in wanted:
        row[name] = bool(group[at]) if name == "test" else group[at]
    row.update(sums.fields())
    return row


async def json_chunks(request: ReportRequest, raw: AsyncIterator[RawRow]) -> AsyncIterator[bytes]:
    """The JSON report, in pieces: the header, one row at a time, then the totals."""
    head = {
        "since": iso(request.since),
        "until": iso(request.until),
        "by": list(request.by),
        "kept_since": iso(request.kept_since),
        "clipped": request.clipped,
    }
    yield orjson.dumps(head)[:-1] + b',"rows":['
    totals = Sums()
    first = True
    async for row in report_rows(request, raw, totals):
        yield (b"" if first else b",\n") + orjson.dumps(row)
        first = False
    yield b'],"totals":' + orjson.dumps(totals.fields()) + b"}\n"


def csv_header(request: ReportRequest) -> list[str]:
    """The CSV columns: the time grain, the dimensions, counters, one `invalid_<reason>` per reason."""
    head = [request.grain] if request.grain else []
    head += list(request.dimensions)
    head += ["impressions", "clicks", "ctr", "invalid_impressions", "invalid_clicks"]
    head += [f"invalid_{reason}" for reason in (*KNOWN_REASONS, "other")]
    return [*head, "delivered", "retried", "dead_lettered", "callback_p50_ms", "callback_p99_ms"]


def csv_line(header: list[str], row: dict[str, Any]) -> str:
    invalid: dict[str, int] = row["invalid"]
    flat = dict(row)
    for reason in KNOWN_REASONS:
        flat[f"invalid_{reason}"] = invalid.get(reason, 0)
    flat["invalid_other"] = sum(n for reason, n in invalid.items() if reason not in KNOWN_REASONS)
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(["" if flat[name] is None else flat[name] for name in header])
    return out.getvalue()


async def csv_chunks(request: ReportRequest, raw: AsyncIterator[RawRow]) -> AsyncIterator[bytes]:
    """The CSV report: a header row, then one line per row (no totals row: a sheet sums its columns)."""
    header = csv_header(request)
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(header)
    yield out.getvalue().encode()
    async for row in report_rows(request, raw, Sums()):
        yield csv_line(header, row).encode()


def table_lines(request: ReportRequest, rows: list[dict[str, Any]], totals: Sums) -> Iterator[list[str]]:
    """Rows for a terminal table: the dimensions, valid counts, CTR, invalid by reason, callbacks; totals last."""
    keys = ([request.grain] if request.grain else []) + list(request.dimensions)
    yield [*keys, "impressions", "clicks", "CTR", "invalid", "delivered", "p50 ms", "p99 ms"]
    for row in [*rows, {**dict.fromkeys(keys, ""), **totals.fields(), **({keys[0]: "total"} if keys else {})}]:
        ctr = "" if row["ctr"] is None else f"{row['ctr'] * 100:.2f}%"
        invalid = " ".join(f"{reason} {n}" for reason, n in row["invalid"].items())
        p50, p99 = row["callback_p50_ms"], row["callback_p99_ms"]
        yield [
            *(str(row[key]) for key in keys),
            str(row["impressions"]),
            str(row["clicks"]),
            ctr,
            invalid,
            str(row["delivered"]),
            "" if p50 is None else str(p50),
            "" if p99 is None else str(p99),
        ]
