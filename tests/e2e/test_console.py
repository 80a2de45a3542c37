"""The operator console in a real browser: Debian's Chromium, driven by Playwright, against `clickbus run --workers 2`.

The page loads without a console error and asks nothing of any other host. 100 scripted clicks
(70 valid, 20 duplicates, 10 from a declared crawler) go through the service to a bidder stub;
the page's figures then equal what `/metrics` says, and the test saves a screenshot of the live
view in docs/ (shown in the README's "Console" section).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession

from clickbus.creative import Inserter
from clickbus.keystore import load_keyring
from clickbus.tokens import AdContext
from tests.e2e.test_browser import CHROMIUM, CHROMIUM_ARGS, _playwright
from tests.support.bidder import BidderStub
from tests.support.service import Service
from tests.support.waiting import eventually_async

pytestmark = [pytest.mark.slow, pytest.mark.browser]

DOCS = Path(__file__).resolve().parents[2] / "docs"
LIVE_SCREENSHOT = DOCS / "console-live.png"
MEMBER = 7
BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
CRAWLER_UA = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
VALID, DUPLICATES, CRAWLED = 70, 20, 10


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
            member_id=MEMBER, auction_id_64=auction, creative_id=500 + auction % 3, landing_url="https://shop.example/"
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


async def test_console_shows_what_metrics_say(service: Service, bidder: BidderStub) -> None:
    async_playwright = _playwright()
    clicks = scripted_clicks(service)
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
            await page.wait_for_function("document.querySelectorAll('#recent tbody tr').length === 50")
            await page.wait_for_function("document.querySelectorAll('.uplot').length >= 6")
            await page.screenshot(path=str(LIVE_SCREENSHOT), full_page=True)
            recent = await page.evaluate(
                "[...document.querySelectorAll('#recent tbody tr')].map(r => [...r.cells].map(c => c.textContent))"
            )
        finally:
            await browser.close()

    assert errors == []
    assert requested and all(url.startswith(service.admin_url + "/") for url in requested), requested
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
    assert len(bidder.received) == VALID
    # the latest clicks: the 20 duplicates came last, each judged and never called back
    assert [row[5] for row in recent[:DUPLICATES]] == ["duplicate"] * DUPLICATES
    assert {row[6] for row in recent[:DUPLICATES]} == {"\N{EN DASH}"}  # the page's "nothing"
    assert {row[3] for row in recent} <= {"500", "501", "502"} and {row[4] for row in recent} == {"shop.example"}
