"""`clickbus report`: a report from the store, as a table on a terminal, CSV when piped, or JSON."""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from clickbus.config import Config
from clickbus.reports.port import StoreUnavailable
from clickbus.reports.render import Sums, csv_chunks, json_chunks, report_rows, table_lines
from clickbus.reports.request import PARAMETERS, ReportRequest, parse_request
from clickbus.reports.service import open_store


def params_of(args: argparse.Namespace) -> dict[str, list[str]]:
    """The command's options as the request parameters `parse_request` reads."""
    params = {name: [value] for name in PARAMETERS if name != "by" and (value := getattr(args, name, None)) is not None}
    if args.by:
        params["by"] = list(args.by)
    return params


async def report(config: Config, params: dict[str, list[str]], out: TextIO) -> int:
    """Print the report `params` ask for; the exit status (1 when the store cannot answer)."""
    asked = parse_request(
        params,
        retention_months=config.reports.retention_months,
        default_format="table" if out.isatty() else "csv",
    )
    store = open_store(config, read_only=True)
    try:
        await store.start()
        await _print(asked, store.query(asked.query), out)
    except StoreUnavailable as exc:
        print(f"clickbus: {exc}", file=sys.stderr)
        return 1
    finally:
        await store.stop()
    return 0


async def _print(asked: ReportRequest, raw: Any, out: TextIO) -> None:
    if asked.format == "table":
        totals = Sums()
        rows = [row async for row in report_rows(asked, raw, totals)]
        _table(asked, rows, totals, out)
        return
    chunks = csv_chunks(asked, raw) if asked.format == "csv" else json_chunks(asked, raw)
    async for chunk in chunks:
        out.write(chunk.decode())
    out.flush()


def _table(asked: ReportRequest, rows: list[dict[str, Any]], totals: Sums, out: TextIO) -> None:
    from rich.console import Console
    from rich.table import Table

    lines = list(table_lines(asked, rows, totals))
    table = Table(*lines[0], title=_title(asked), show_footer=False)
    for i, line in enumerate(lines[1:], 1):
        table.add_row(*line, end_section=i == len(lines) - 2)
    Console(file=out).print(table)


def _title(asked: ReportRequest) -> str:
    from clickbus.reports.window import iso

    kept = f" (kept since {iso(asked.kept_since)}: older rows are gone)" if asked.clipped else ""
    return f"{iso(asked.since)} to {iso(asked.until)}{kept}"
