"""`GET /metrics` on the edge: the redirect, insertion and log append paths are counted."""

from __future__ import annotations

from pathlib import Path

from pytest_aiohttp import AiohttpClient

from clickbus.edge import create_admin_app
from tests.support.configs import edge_config
from tests.support.edgeapp import EdgeClient, admin_client, app_click_path, make_app
from tests.test_metrics import sample


async def scrape(client: EdgeClient) -> str:
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return str(await response.text())


async def test_clicks_redirects_and_appends_are_counted(tmp_path: Path, aiohttp_client: AiohttpClient) -> None:
    app, _ = make_app(edge_config(tmp_path))
    client = await aiohttp_client(app)
    for i in range(3):
        response = await client.get(app_click_path(app, auction_id=i), allow_redirects=False)
        assert response.status == 302
    assert (await client.get("/ck/not-a-token", allow_redirects=False)).status == 400
    assert (await client.head(app_click_path(app), allow_redirects=False)).status == 302  # HEAD: not a click
    async with admin_client(app) as admin:
        text = await scrape(admin)
    assert sample(text, "clickbus_clicks_total", source="redirect", reason="valid") == 3
    assert sample(text, "clickbus_redirect_seconds_count", status="302") == 4
    assert sample(text, "clickbus_redirect_seconds_count", status="400") == 1
    assert sample(text, "clickbus_log_append_seconds_count", topic="clicks", outcome="ok") == 3


async def test_insertions_are_counted_by_outcome(tmp_path: Path, aiohttp_client: AiohttpClient) -> None:
    app, _ = make_app(edge_config(tmp_path))
    await aiohttp_client(app)
    client = await aiohttp_client(create_admin_app(app))
    good = {"markup": "<a href='${CLICK_URL}https://x.example/'>x</a>", "auction": {"member_id": 1}}
    assert (await client.post("/v1/insert", json=good)).status == 200
    assert (await client.post("/v1/insert", json={"markup": 1})).status == 422
    assert (await client.post("/v1/insert", data=b"{", headers={"Content-Type": "application/json"})).status == 400
    text = await scrape(client)
    assert sample(text, "clickbus_insertions_total", outcome="ok") == 1
    assert sample(text, "clickbus_insertions_total", outcome="invalid") == 1
    assert sample(text, "clickbus_insertions_total", outcome="bad_body") == 1
