"""The click flow in a real browser: Debian's Chromium, driven by Playwright, on pages served locally.

A publisher page holds a creative inserted through `POST /v1/insert`; its script fires the
impression beacon (a cross-origin JSON POST, preflighted), the user clicks the ad, Chromium follows
the 302 to the landing page, the click record in the log carries the browser's user agent and
referer, and the notifier delivers the click to a bidder stub as a `click_request`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import ClientSession, web
from pytest_aiohttp import AiohttpServer

from clickbus import runtime
from clickbus.config import Config
from clickbus.edge import create_admin_app
from clickbus.log.port import Topic
from clickbus.metrics import create_metrics
from tests.support.bidder import BidderStub
from tests.support.configs import build_config
from tests.support.ports import free_port
from tests.support.records import recorded
from tests.support.waiting import eventually

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
pytestmark = [pytest.mark.slow, pytest.mark.browser]


def _playwright() -> Any:
    if not CHROMIUM.exists():
        pytest.skip(f"no browser: {CHROMIUM} is missing (make test installs Debian's chromium when run as root)")
    try:
        from playwright.async_api import async_playwright
    except ImportError as exc:
        pytest.skip(f"no browser driver: playwright is not installed ({exc}); install the test extra")
    return async_playwright


USER = {"user_id": "user-6f92d1e9", "session_id": "session-5898b8d1"}
# The page reports its impression as VTEX publishers do: the insertion's beacon URL, a JSON body.
# `keepalive` lets it outlive the page; its JSON content type makes Chromium preflight it.
BEACON_SCRIPT = """<script>
fetch(%s, {method: "POST", keepalive: true, headers: {"Content-Type": "application/json"}, body: JSON.stringify(%s)})
  .then(r => r.json().then(b => { window.impression = {status: r.status, body: b}; }))
  .catch(e => { window.impression = {error: String(e)}; });
</script>"""


def publisher(markup: str, impression_beacon: str) -> web.Application:
    """A publisher's site: the page with the ad, and the advertiser's landing page."""
    script = BEACON_SCRIPT % (orjson.dumps(impression_beacon).decode(), orjson.dumps(USER).decode())
    page = f"<!doctype html><title>news</title><h1>News</h1>{markup}{script}"

    async def home(request: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html")

    async def landing(request: web.Request) -> web.Response:
        return web.Response(text="<title>landing</title>ok", content_type="text/html")

    app = web.Application()
    app.router.add_get("/", home)
    app.router.add_get("/landing", landing)
    return app


def edge_config(tmp_path: Path, port: int, bidder_url: str) -> Config:
    """The edge on `port`, member 7's bidder at `bidder_url`; the bidder and the landing site are on loopback,
    so both are allowed explicitly (`allow_private`, `allow_private_landings`)."""
    edge = {"listen": f"127.0.0.1:{port}", "public_url": f"http://127.0.0.1:{port}", "allow_private_landings": True}
    return build_config(
        tmp_path / "var",
        edge=edge,
        members={"7": {"click_uri": bidder_url, "allow_private": True}},
        notifier={"commit_interval_s": 0.05},
    )


def headful_user_agent(user_agent: str) -> str:
    """Headless Chromium says `HeadlessChrome`, which the notifier rightly drops as a crawler."""
    return user_agent.replace("HeadlessChrome/", "Chrome/")


async def test_click_flow_in_chromium(tmp_path: Path, aiohttp_server: AiohttpServer) -> None:
    async_playwright = _playwright()
    bidder = BidderStub()
    await bidder.start()
    try:
        await _click_flow(tmp_path, aiohttp_server, async_playwright, bidder)
    finally:
        await bidder.stop()


async def _click_flow(tmp_path: Path, aiohttp_server: AiohttpServer, async_playwright: Any, bidder: BidderStub) -> None:
    edge_port, site_port = free_port(), free_port()
    config = edge_config(tmp_path, edge_port, bidder.url)
    edge = await aiohttp_server(
        runtime.edge_app(config, metrics=create_metrics(), with_notifier=True), host="127.0.0.1", port=edge_port
    )
    site_url = f"http://127.0.0.1:{site_port}"
    landing = f"{site_url}/landing?from=ad"
    body = {
        "markup": f'<a id="ad" href="${{CLICK_URL}}{landing}">Buy now</a>',
        "auction": {"member_id": 7, "auction_id_64": 4242, "creative_id": 9},
    }
    admin = await aiohttp_server(create_admin_app(edge.app), host="127.0.0.1")
    async with ClientSession() as session, session.post(f"{admin.make_url('/v1/insert')}", json=body) as response:
        assert response.status == 200
        inserted = await response.json()
    site = publisher(inserted["markup"], inserted["beacons"]["impression"])
    await aiohttp_server(site, host="127.0.0.1", port=site_port)

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            probe = await browser.new_page()
            user_agent = headful_user_agent(await probe.evaluate("navigator.userAgent"))
            await probe.close()
            page = await browser.new_page(user_agent=user_agent)
            requested: list[tuple[str, str]] = []
            page.on("request", lambda request: requested.append((request.method, request.url)))
            await page.goto(site_url + "/")
            # The impression fires: a preflight, then the beacon's POST, answered 202 (read by the page: CORS allows it)
            impression = await (await page.wait_for_function("window.impression")).json_value()
            assert impression == {"status": 202, "body": {"messages": ["impression will be processed soon"]}}
            assert ("POST", inserted["beacons"]["impression"]) in requested
            await page.click("#ad")
            await page.wait_for_url(landing)
            assert await page.title() == "landing"
        finally:
            await browser.close()

    (shown,) = await recorded(config, Topic.IMPRESSIONS)
    assert (shown["source"], shown["user_id"], shown["session_id"]) == ("beacon", USER["user_id"], USER["session_id"])
    assert shown["user_agent"] == user_agent and shown["auction_id_64"] == 4242 and shown["valid"] is True
    (click,) = await recorded(config, Topic.CLICKS)
    assert click["auction_id_64"] == 4242 and click["member_id"] == 7 and click["creative_id"] == 9
    assert click["landing_url"] == landing
    assert click["user_agent"] == user_agent and "Chrome" in user_agent
    assert click["referer_url"] == site_url + "/"  # cross-origin: the browser sends the page's origin
    assert click["source"] == "redirect" and click["valid"] is True
    assert any(url.startswith(f"http://127.0.0.1:{edge_port}/ck/") for _, url in requested)
    # The notifier (running inside the edge) delivers the click to member 7's bidder.
    await eventually(lambda: bidder.received)
    (delivery,) = bidder.received
    request = orjson.loads(delivery.body)["click_request"]
    assert delivery.webhook_id == click["click_id"]
    assert (request["member_id"], request["auction_id_64"]) == (7, 4242)
    assert request["user_agent"] == user_agent
    assert request["referer_url"] == site_url + "/"
