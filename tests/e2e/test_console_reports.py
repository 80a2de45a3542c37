"""The console's report view in Chromium, against a recorded sample of the `/v1/reports` contract.

What this tests: the page's own code, i.e. the request it builds from the form, how it draws a
report of the agreed shape (chart, sortable table, totals, CTR, CSV link), and that it says
"reports not available" when `/v1/reports` answers 404. What it does not test: the reports
themselves. `/v1/reports` here is a stub route on the real internal listener's application that
answers the sample below whatever it is asked; the test of the page against real reports comes
with the reports service (issue 17).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from clickbus.edge import create_admin_app, create_app
from clickbus.metrics import create_metrics
from tests.e2e.test_browser import CHROMIUM, CHROMIUM_ARGS, _playwright
from tests.support.configs import build_config

pytestmark = [pytest.mark.slow, pytest.mark.browser]

COUNTERS = {"invalid_impressions": 0, "delivered": 2, "retried": 0, "dead_lettered": 0}
SAMPLE: dict[str, Any] = {  # the agreed contract's shape, as the reports issue's JSON example has it
    "since": "2026-12-02T14:00:00Z",
    "until": "2026-12-03T14:00:00Z",
    "by": ["hour", "creative"],
    "kept_since": "2026-11-26T00:00:00Z",
    "clipped": False,
    "rows": [
        {"hour": "2026-12-03T12:00:00Z", "creative": 5, "impressions": 40, "clicks": 4, "ctr": 0.1, "invalid_clicks": 0}
        | {"invalid": {}, "callback_p50_ms": 11.0, "callback_p99_ms": 30.2}
        | COUNTERS,
        {"hour": "2026-12-03T13:00:00Z", "creative": 5, "impressions": 10, "clicks": 2, "ctr": 0.2, "invalid_clicks": 1}
        | {"invalid": {"duplicate": 1}, "callback_p50_ms": 12.5, "callback_p99_ms": 40.1}
        | COUNTERS,
        {"hour": "2026-12-03T13:00:00Z", "creative": 6, "impressions": 100, "clicks": 9, "ctr": 0.09}
        | {"invalid_clicks": 3, "invalid": {"bot": 2, "duplicate": 1}, "callback_p50_ms": 9.0, "callback_p99_ms": 20.0}
        | COUNTERS,
    ],
    "totals": {"impressions": 150, "clicks": 15, "ctr": 0.1, "invalid_clicks": 4, "invalid": {"bot": 2, "duplicate": 2}}
    | {"callback_p50_ms": 10.0, "callback_p99_ms": 40.1}
    | COUNTERS,
}


async def serve_console(tmp_path: Path, aiohttp_server: AiohttpServer, reports: bool) -> tuple[str, list[str]]:
    """The internal listener's application, with the stub `/v1/reports` when `reports`; its URL and what was asked."""
    edge = create_app(build_config(tmp_path / "var"), metrics=create_metrics())
    admin = create_admin_app(edge)
    asked: list[str] = []

    async def stub(request: web.Request) -> web.Response:
        asked.append(request.raw_path)
        return web.Response(body=orjson.dumps(SAMPLE), content_type="application/json")

    if reports:
        admin.router.add_get("/v1/reports", stub)
    await aiohttp_server(edge, host="127.0.0.1")
    server = await aiohttp_server(admin, host="127.0.0.1")
    return str(server.make_url("/")), asked


async def test_report_view_draws_the_contract(tmp_path: Path, aiohttp_server: AiohttpServer) -> None:
    async_playwright = _playwright()
    url, asked = await serve_console(tmp_path, aiohttp_server, reports=True)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            await page.goto(url + "#reports")
            await page.wait_for_function("document.querySelectorAll('#report-table tbody tr').length === 3")
            table = "[...document.querySelectorAll('#report-table tr')].map(r => [...r.cells].map(c => c.textContent))"
            head, *rows, totals = await page.evaluate(table)
            await page.click("#report-table th[data-column=clicks]")
            sorted_rows = await page.evaluate(table)
            csv = await page.get_attribute("#report-csv", "href")
            chart = await page.locator("#report-figure .uplot").count()
            status = await page.text_content("#report-status")
        finally:
            await browser.close()
    assert errors == []
    assert asked == ["/v1/reports?since=24h&by=hour%2Ccreative&format=json"]  # the form's defaults
    assert csv == "/v1/reports?since=24h&by=hour%2Ccreative&format=csv"
    assert head[:5] == ["hour", "creative", "impressions", "clicks", "ctr"]
    assert [r[:5] for r in rows] == [
        ["2026-12-03T12:00:00Z", "5", "40", "4", "10.00%"],
        ["2026-12-03T13:00:00Z", "5", "10", "2", "20.00%"],
        ["2026-12-03T13:00:00Z", "6", "100", "9", "9.00%"],
    ]
    assert totals[:5] == ["total", "\N{EN DASH}", "150", "15", "10.00%"]
    assert "bot 2, duplicate 1" in rows[2]
    assert [r[3] for r in sorted_rows[1:-1]] == ["9", "4", "2"]  # by clicks, most first
    assert chart == 1 and status is not None and "3 rows" in status


async def test_report_view_without_reports(tmp_path: Path, aiohttp_server: AiohttpServer) -> None:
    async_playwright = _playwright()
    url, _ = await serve_console(tmp_path, aiohttp_server, reports=False)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            await page.goto(url + "#reports")
            await page.wait_for_function(
                "document.querySelector('#report-status').textContent.includes('not available')"
            )
            rows = await page.locator("#report-table tbody tr").count()
            live = await page.is_hidden("#live")
        finally:
            await browser.close()
    assert errors == [] and rows == 0 and live
