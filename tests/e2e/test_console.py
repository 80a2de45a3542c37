"""The operator console in a real browser: Debian's Chromium, driven by Playwright, against `clickbus run --workers 2`.

The page loads without a console error and asks nothing of any other host. 100 scripted clicks
(70 valid, 20 duplicates, 10 from a declared crawler) go through the service to a bidder stub;
the live view's figures then equal what `/metrics` says, and the report view's table equals what
`/v1/reports` answers (and both agree with `/metrics`). The test saves a screenshot of each view
in docs/ (shown in the README's "Console" section).
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession
from pytest_aiohttp import AiohttpServer

from clickbus.console.feed import Feed
from clickbus.console.recent import RecentClicks
from clickbus.creative import Inserter
from clickbus.edge import create_admin_app, create_app
from clickbus.keystore import load_keyring
from clickbus.metrics import create_metrics
from clickbus.tokens import AdContext
from tests.e2e.test_browser import CHROMIUM, CHROMIUM_ARGS, _playwright
from tests.support.bidder import BidderStub
from tests.support.configs import build_config
from tests.support.service import Service
from tests.support.waiting import eventually_async

pytestmark = [pytest.mark.slow, pytest.mark.browser]

DOCS = Path(__file__).resolve().parents[2] / "docs"
LIVE_SCREENSHOT = DOCS / "console-live.png"
REPORTS_SCREENSHOT = DOCS / "console-reports.png"
# what the report view asks first: its form's defaults (the last 24 h, by hour and creative)
REPORT_QUERY = "since=24h&by=hour%2Ccreative"
MEMBER = 7
BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
CRAWLER_UA = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
VALID, DUPLICATES, CRAWLED = 70, 20, 10
CREATIVE = 1500  # ids past 999: a page that formats them as counts would show "1,500"
CREATIVES = {CREATIVE, CREATIVE + 1, CREATIVE + 2}


@pytest.fixture
async def bidder() -> AsyncIterator[BidderStub]:
    stub = BidderStub()
    await stub.start()
    yield stub
    await stub.stop()


@pytest.fixture
async def service(tmp_path: Path, bidder: BidderStub) -> AsyncIterator[Service]:
    tables = (
        f'[members.{MEMBER}]\nclick_uri = "{bidder.url}"\nallow_private = true\n[notifier]\ncommit_interval_s = 0.05\n'
    )
    running = await asyncio.to_thread(Service(tmp_path, workers=2, notifier=True, extra=tables).start)
    yield running
    await asyncio.to_thread(running.stop)


def scripted_clicks(service: Service) -> list[tuple[str, str]]:
    """(click URL, user agent): 70 distinct ads clicked by a browser, 20 of them twice, 10 ads clicked by a crawler."""
    inserter = Inserter(load_keyring(service.config), service.url, ttl_s=3600)

    def url(auction: int) -> str:
        ad = AdContext(
            member_id=MEMBER,
            auction_id_64=auction,
            creative_id=CREATIVE + auction % 3,
            landing_url="https://shop.example/",
        )
        return inserter.click_url(ad)

    valid = [(url(n), BROWSER_UA) for n in range(1, VALID + 1)]
    crawled = [(url(n), CRAWLER_UA) for n in range(1000, 1000 + CRAWLED)]
    return valid + crawled + valid[:DUPLICATES]  # a duplicate comes after its first click


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`, in a Prometheus text exposition."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0] if "{" in line else ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def quantile_ms(text: str, name: str, q: float) -> float | None:
    """As `clickbus status` reads a quantile: the upper bound of the bucket that holds it."""
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith(name + "_bucket{"):
            le = re.search(r'le="([^"]+)"', line)
            assert le is not None
            buckets[float(le.group(1))] = buckets.get(float(le.group(1)), 0.0) + float(line.rsplit(" ", 1)[1])
    if not buckets or buckets[max(buckets)] == 0:
        return None
    rank = q * buckets[max(buckets)]
    bound = next(b for b in sorted(buckets) if buckets[b] >= rank)
    return None if bound == float("inf") else bound * 1000


async def page_figures(page: Any) -> dict[str, str]:
    """Every figure the page shows, by its `data-metric` name, as the raw value behind the text."""
    script = "[...document.querySelectorAll('[data-metric]')].map(n => [n.dataset.metric, n.dataset.value])"
    figures: dict[str, str] = await page.evaluate(f"Object.fromEntries({script})")
    return figures


async def until_shown(page: Any, expression: str, timeout_s: float = 15) -> Any:
    """Wait until `expression`, evaluated in the page, is truthy (the page's CSP forbids Playwright's own polling)."""

    async def check() -> Any:
        return await page.evaluate(expression)

    return await eventually_async(check, timeout_s=timeout_s)


async def report_table(page: Any) -> dict[str, Any]:
    """The report view's table: columns, rows and totals as the values behind the cells, and the cells' text."""
    script = """(() => {
        const value = (c) => [c.dataset.column, JSON.parse(c.dataset.value)];
        const values = (r) => Object.fromEntries([...r.cells].map(value));
        const table = document.querySelector('#report-table');
        return {
            columns: [...table.tHead.rows[0].cells].map(c => c.dataset.column),
            rows: [...table.tBodies[0].rows].map(values),
            totals: values(table.tFoot.rows[0]),
            text: [...table.rows].map(r => [...r.cells].map(c => c.textContent)),
        };
    })()"""
    table: dict[str, Any] = await page.evaluate(script)
    return table


async def counted_by_reports(session: ClientSession, url: str) -> dict[str, Any] | None:
    """The report at `url` once the reporter has counted every scripted click and callback, else None."""
    async with session.get(url) as response:
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
    totals = body["totals"]
    expected = {"clicks": VALID, "invalid": {"duplicate": DUPLICATES, "bot": CRAWLED}, "delivered": VALID}
    return body if {k: totals[k] for k in expected} == expected else None


async def test_console_shows_what_metrics_and_reports_say(service: Service, bidder: BidderStub) -> None:
    async_playwright = _playwright()
    clicks = scripted_clicks(service)
    report_url = f"{service.admin_url}/v1/reports?{REPORT_QUERY}&format=json"
    async with ClientSession() as session:
        for url, user_agent in clicks:
            async with session.get(url, headers={"User-Agent": user_agent}, allow_redirects=False) as response:
                assert response.status == 302

        async def metrics_settled() -> str | None:
            async with session.get(service.admin_url + "/metrics") as response:
                text = await response.text()
            judged = metric(text, "clickbus_verdicts_total", kind="click")
            delivered = metric(text, "clickbus_deliveries_total", member=str(MEMBER), status="delivered")
            # hot-path samples are written at most a second apart: wait for the histograms too
            acknowledged = metric(text, "clickbus_click_to_callback_seconds_count")
            redirected = metric(text, "clickbus_redirect_seconds_count")
            settled = (judged, delivered, acknowledged, redirected) == (len(clicks), VALID, VALID, len(clicks))
            return text if settled else None

        text = await eventually_async(metrics_settled, timeout_s=20)
        # the reporter reads the notifier's verdicts and outcomes behind it: wait until it has counted them all
        reported = await eventually_async(lambda: counted_by_reports(session, report_url), timeout_s=20)
        async with session.get(report_url, headers={"Host": "evil.example"}) as response:
            assert response.status == 421  # a DNS-rebinding page reads no report either

        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page(viewport={"width": 1280, "height": 900})
                errors: list[str] = []
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e: errors.append(str(e)))
                requested: list[str] = []
                page.on("request", lambda request: requested.append(request.url))
                await page.goto(service.admin_url + "/")

                async def shown() -> dict[str, str] | None:
                    figures = await page_figures(page)
                    done = {"clicks.all": len(clicks), f"bidder.{MEMBER}.delivered": VALID}
                    return figures if all(float(figures.get(k) or "nan") == v for k, v in done.items()) else None

                figures = await eventually_async(shown, timeout_s=15)
                await until_shown(page, "document.querySelectorAll('#recent tbody tr').length === 50")
                await until_shown(page, "document.querySelectorAll('#live .uplot').length >= 6")
                await page.screenshot(path=str(LIVE_SCREENSHOT), full_page=True)
                recent = await page.evaluate(
                    "[...document.querySelectorAll('#recent tbody tr')].map(r => [...r.cells].map(c => c.textContent))"
                )

                await page.click("#tab-reports")
                await until_shown(page, "document.querySelector('#report-table th')?.dataset.column === 'hour'")
                await until_shown(page, "document.querySelectorAll('#report-figure .uplot').length === 1")
                table = await report_table(page)
                await page.screenshot(path=str(REPORTS_SCREENSHOT), full_page=True)
                csv_link = await page.get_attribute("#report-csv", "href")
                await page.click("#report-table th[data-column=invalid_clicks]")
                by_invalid = (await report_table(page))["rows"]
                # another range and grouping, picked in the form
                await page.fill("#report-form [name=since]", "7d")
                await page.select_option("#report-form [name=time]", "day")
                await page.uncheck("#report-form [name=dim-creative]")
                await page.check("#report-form [name=dim-member]")
                await page.click("#report-form button[type=submit]")
                await until_shown(page, "document.querySelector('#report-table th').dataset.column === 'day'")
                by_day = await report_table(page)
                picked_link = await page.get_attribute("#report-csv", "href")
                # one period (today, by day): the chart's axis is that day, not the thousand days uPlot gives one point
                today = datetime.now(UTC).date().isoformat()
                await page.fill("#report-form [name=since]", today)
                await page.click("#report-form button[type=submit]")
                await until_shown(page, f"document.querySelector('#report-status').textContent.includes('{today}T00')")
                window = "(d => [+d.from, +d.until])(document.querySelector('#chart-report').dataset)"
                one_day = await page.evaluate(window)
            finally:
                await browser.close()
        assert csv_link is not None
        async with session.get(service.admin_url + csv_link) as response:
            assert response.status == 200 and response.content_type == "text/csv"
            csv_rows = list(csv.DictReader(io.StringIO(await response.text())))

    assert errors == []
    assert requested and all(url.startswith(service.admin_url + "/") for url in requested), requested
    assert_live_view(text, figures, recent)
    assert len(bidder.received) == VALID
    assert_report_view(text, reported, table, csv_link, csv_rows)
    assert by_invalid == sorted(table["rows"], key=lambda row: row["invalid_clicks"], reverse=True)
    assert picked_link == "/v1/reports?since=7d&by=day%2Cmember&format=csv"
    assert by_day["columns"][:2] == ["day", "member"]
    assert {row["member"] for row in by_day["rows"]} == {MEMBER}  # one row a day (two, if run across midnight)
    assert {row[1] for row in by_day["text"][1:-1]} == {str(MEMBER)}
    midnight = datetime.fromisoformat(today).replace(tzinfo=UTC).timestamp()
    assert one_day == [midnight - 43_200, midnight + 43_200]
    day_totals = by_day["totals"]
    assert (day_totals["clicks"], day_totals["invalid"]) == (VALID, {"bot": CRAWLED, "duplicate": DUPLICATES})


def assert_live_view(text: str, figures: dict[str, str], recent: list[list[str]]) -> None:
    """The live view's figures are what /metrics says; the latest clicks are the scripted ones."""
    # the scripted traffic, as the notifier judged it, and as /metrics counts it
    expected = {"valid": VALID, "duplicate": DUPLICATES, "bot": CRAWLED}
    assert {r: metric(text, "clickbus_verdicts_total", kind="click", reason=r) for r in expected} == expected
    for reason in expected:
        assert float(figures[f"clicks.{reason}"]) == metric(
            text, "clickbus_verdicts_total", kind="click", reason=reason
        )
    assert float(figures["clicks.all"]) == metric(text, "clickbus_verdicts_total", kind="click") == 100
    outcomes = {"delivered": "delivered", "retried": "retry", "held": "parked"}
    for shown_as, status in outcomes.items():
        at_metrics = metric(text, "clickbus_deliveries_total", member=str(MEMBER), status=status)
        assert float(figures[f"bidder.{MEMBER}.{shown_as}"]) == at_metrics
    assert float(figures[f"bidder.{MEMBER}.dead_lettered"]) == metric(text, "clickbus_dead_letters_total") == 0
    assert float(figures[f"bidder.{MEMBER}.refused"]) == metric(text, "clickbus_callback_refusals_total") == 0
    assert figures[f"bidder.{MEMBER}.breaker"] == "closed"
    for name, histogram, q in [
        ("redirect_p50_ms", "clickbus_redirect_seconds", 0.5),
        ("redirect_p99_ms", "clickbus_redirect_seconds", 0.99),
        ("callback_p99_ms", "clickbus_click_to_callback_seconds", 0.99),
    ]:
        assert float(figures[name]) == quantile_ms(text, histogram, q), name
    assert figures["log_ready"] == "true" and metric(text, "clickbus_log_unavailable") == 0
    assert float(figures["spool_records"]) == metric(text, "clickbus_spool_records") == 0
    # the latest clicks: the 20 duplicates came last, each judged and never called back
    assert [row[5] for row in recent[:DUPLICATES]] == ["duplicate"] * DUPLICATES
    assert {row[6] for row in recent[:DUPLICATES]} == {"\N{EN DASH}"}  # the page's "nothing"
    assert {row[3] for row in recent} <= {str(c) for c in CREATIVES} and {row[4] for row in recent} == {"shop.example"}


def assert_report_view(
    text: str, reported: dict[str, Any], table: dict[str, Any], csv_link: str, csv_rows: list[dict[str, str]]
) -> None:
    """The report view's table is what /v1/reports answered, whose totals are what /metrics counted."""
    columns = table["columns"]
    assert columns[:2] == ["hour", "creative"] and {"clicks", "ctr", "invalid", "delivered"} <= set(columns)
    assert table["rows"] == [{c: row[c] for c in columns} for row in reported["rows"]]
    assert table["totals"] == {c: reported["totals"].get(c) for c in columns}
    assert {row["creative"] for row in table["rows"]} == CREATIVES
    assert {row[1] for row in table["text"][1:-1]} == {str(c) for c in CREATIVES}  # ids, not counts
    totals = table["totals"]
    assert totals["clicks"] == metric(text, "clickbus_verdicts_total", kind="click", reason="valid") == VALID
    for reason, n in {"duplicate": DUPLICATES, "bot": CRAWLED}.items():
        assert totals["invalid"][reason] == metric(text, "clickbus_verdicts_total", kind="click", reason=reason) == n
    assert totals["invalid_clicks"] == DUPLICATES + CRAWLED
    delivered = metric(text, "clickbus_deliveries_total", member=str(MEMBER), status="delivered")
    assert totals["delivered"] == delivered == VALID and totals["dead_lettered"] == 0
    shown = dict(zip(columns, table["text"][-1], strict=True))
    assert (shown["hour"], shown["clicks"], shown["ctr"]) == ("total", "70", "\N{EN DASH}")  # no impressions: no CTR
    assert shown["invalid"] == "bot 10\nduplicate 20" and shown["ivt_rate"] == "bot 10.0%\nduplicate 20.0%"
    # the CSV link is the same report, as CSV
    assert csv_link == f"/v1/reports?{REPORT_QUERY}&format=csv"
    assert sum(int(row["clicks"]) for row in csv_rows) == VALID
    assert sum(int(row["invalid_duplicate"]) for row in csv_rows) == DUPLICATES
    assert sum(int(row["invalid_bot"]) for row in csv_rows) == CRAWLED


async def test_a_live_chart_of_one_sample_ends_at_it(tmp_path: Path, aiohttp_server: AiohttpServer) -> None:
    """A page opened in the service's first seconds has one sample: the window of five minutes ends at it.

    uPlot stretches a time scale around a single point to a thousand days (86400 / its 1e-3), and the
    charts showed an empty August 2029 until a second sample came (caught in the console screenshot).
    """
    config = build_config(tmp_path / "var")
    metrics = create_metrics()
    server = await aiohttp_server(create_admin_app(create_app(config, metrics=metrics)), host="127.0.0.1")
    async_playwright = _playwright()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            # the notifier's feed as its second second writes it: one sample, of rates between the two. Written
            # once the browser is up, so that the page reads it fresh (a feed older than STALE_S has no notifier
            # behind it, and the edge would sample for itself)
            feed = Feed(config, metrics, RecentClicks())
            feed.write([])
            feed.write([])
            [sample] = feed.sampler.ring
            await page.goto(str(server.make_url("/")))
            shown = await until_shown(
                page,
                "[...document.querySelectorAll('#live .chart')].every(c => c.dataset.until)"
                " && [...document.querySelectorAll('#live .chart')].map(c => [+c.dataset.from, +c.dataset.until])",
            )
        finally:
            await browser.close()
    assert shown == [pytest.approx([sample["t"] - 300, sample["t"]])] * 6  # each chart: five minutes, ending at it


def tableless_store(path: Path) -> None:
    """An empty reports file: SQLite reads it as a database without tables, so every query fails."""
    path.parent.mkdir(parents=True)
    path.touch()


async def test_report_view_says_when_reports_are_not_available(tmp_path: Path, aiohttp_server: AiohttpServer) -> None:
    """A store that cannot answer (here a reports file that is no database) is a 503, which the page says."""
    config = build_config(tmp_path / "var")
    tableless_store(Path(config.reports_path))
    admin = create_admin_app(create_app(config, metrics=create_metrics()))
    server = await aiohttp_server(admin, host="127.0.0.1")
    async_playwright = _playwright()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            await page.goto(str(server.make_url("/#reports")))
            status = await until_shown(
                page,
                "(t => t.includes('not available') && t)(document.querySelector('#report-status').textContent)",
            )
            rows = await page.locator("#report-table tbody tr").count()
            live = await page.is_hidden("#live")
        finally:
            await browser.close()
    assert errors == [] and rows == 0 and live
    assert "report store" in status
