"""The console on the internal listener, over real HTTP: the page and its assets from the package, nothing on the
public listener, at most 200 KB in all, and the live feed, written by the notifier or sampled by the worker.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from clickbus.console.feed import FEED_FILE
from clickbus.console.routes import ASSETS
from clickbus.edge import create_admin_app
from clickbus.edge.admin_guard import SECURITY_HEADERS
from clickbus.metrics import create_metrics
from clickbus.runtime import edge_app
from tests.notifier.factory import BROWSER_UA
from tests.support.configs import build_config
from tests.support.edgeapp import app_click_path
from tests.support.waiting import eventually_async

Client = TestClient[web.Request, web.Application]
PAGE_LIMIT = 200 * 1024
LOADED = ["/console/console.js", "/console/uPlot.esm.js", "/console/console.css", "/console/uPlot.min.css"]
CONSOLE_PATHS = ["/", "/console/console.js", "/console/uPlot.esm.js", "/v1/console/live"]


@pytest.fixture
async def listeners(tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    notifier = getattr(request, "param", False)
    edge = edge_app(build_config(tmp_path / "var"), metrics=create_metrics(), with_notifier=notifier)
    async with TestClient(TestServer(edge)) as public, TestClient(TestServer(create_admin_app(edge))) as admin:
        yield public, admin


def referenced(text: str) -> list[str]:
    """What a page or module loads by itself: stylesheets, icons, scripts, images and imported modules (not links)."""
    tags = re.findall(r'<(?:link|script|img)\b[^>]*\b(?:href|src)="([^"]+)"', text)
    return tags + re.findall(r'\bfrom\s+"([^"]+)"', text)


async def test_the_whole_page_weighs_at_most_200_kb(listeners: tuple[Client, Client]) -> None:
    _, admin = listeners
    page = await admin.get("/")
    assert page.status == 200 and page.content_type == "text/html"
    assert {k: page.headers[k] for k in SECURITY_HEADERS} == SECURITY_HEADERS
    html = await page.read()
    loads = [u if u.startswith("/") else "/console/" + u.removeprefix("./") for u in referenced(html.decode())]
    script = await (await admin.get("/console/console.js")).text()
    loads += ["/console/" + u.removeprefix("./") for u in referenced(script)]
    assert all(u.startswith("/console/") for u in loads), loads  # nothing from a CDN, nothing from another host
    assert set(LOADED) <= set(loads)
    weight = len(html)
    for url in set(loads):
        response = await admin.get(url)
        assert response.status == 200, url
        weight += len(await response.read())
    assert weight <= PAGE_LIMIT, weight


async def test_assets_are_the_packaged_files(listeners: tuple[Client, Client]) -> None:
    _, admin = listeners
    for name, content_type in ASSETS.items():
        response = await admin.get(f"/console/{name}")
        assert (response.status, response.content_type) == (200, content_type), name
    assert "Leon Sorokin" in await (await admin.get("/console/LICENSE.uPlot")).text()
    for name in ("index.html", "../routes.py", "vendor/README.md", "nothing.js"):
        assert (await admin.get(f"/console/{name}")).status == 404


async def test_the_public_listener_serves_none_of_it(listeners: tuple[Client, Client]) -> None:
    public, _ = listeners
    for path in CONSOLE_PATHS:
        assert (await public.get(path)).status == 404, path


async def test_without_a_notifier_the_worker_samples_itself(listeners: tuple[Client, Client]) -> None:
    _, admin = listeners
    response = await admin.get("/v1/console/live")
    assert response.status == 200 and response.headers["Cache-Control"] == "no-store"
    feed = await response.json()
    assert feed["source"] == "edge" and feed["recent"] is None
    assert feed["latest"]["clicks"] == {} and feed["latest"]["log_ready"] is True
    assert (await admin.get("/v1/console/live?after=soon")).status == 400


@pytest.mark.parametrize("listeners", [True], indirect=True, ids=["notifier"])
async def test_the_notifier_feeds_judged_clicks(listeners: tuple[Client, Client], tmp_path: Path) -> None:
    public, admin = listeners
    path = app_click_path(public.app, auction_id=41)
    for _ in range(2):
        assert (await public.get(path, headers={"User-Agent": BROWSER_UA}, allow_redirects=False)).status == 302

    async def fed() -> dict[str, Any] | None:
        feed: dict[str, Any] = await (await admin.get("/v1/console/live")).json()
        judged = feed["source"] == "notifier" and len(feed["recent"] or []) == 2
        return feed if judged and sum(feed["latest"]["clicks"].values()) == 2 else None

    feed = await eventually_async(fed, timeout_s=15)
    assert (tmp_path / "var" / FEED_FILE).exists()  # outside multiprocess mode, the feed lives in data_dir
    assert feed["latest"]["clicks"] == {"valid": 1, "duplicate": 1}
    newest, first = feed["recent"]
    assert (newest["verdict"], first["verdict"]) == ("duplicate", "valid")
    assert first["landing_host"] == "landing.example" and first["member"] == 7
    later = await (await admin.get(f"/v1/console/live?after={feed['now'] + 60}")).json()
    assert later["samples"] == [] and later["latest"]["clicks"] == feed["latest"]["clicks"]
