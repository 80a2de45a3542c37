"""The internal listener mints tokens, so a web page must never reach it through an operator's browser.

DNS rebinding (a foreign name resolving to the listener) meets `421` on every route; answers
forbid framing and foreign content; no route grants CORS; a cross-origin form or `text/plain`
POST cannot mint a token. All over real HTTP to the admin application.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from clickbus.edge import create_admin_app, create_app
from clickbus.edge.admin_guard import SECURITY_HEADERS, host_allowed, host_name
from clickbus.metrics import Metrics, create_metrics
from tests.support.configs import build_config

Client = TestClient[web.Request, web.Application]
INSERT = {"markup": "${CLICK_URL}", "landing_url": "https://shop.example/", "auction": {"member_id": 13}}
EVIL = "evil.example"


@pytest.fixture
async def admin(tmp_path: Path) -> Any:
    metrics = create_metrics()
    config = build_config(tmp_path, edge={"admin_hosts": ["Clickbus.Internal"]})
    edge = create_app(config, metrics=metrics)
    async with TestClient(TestServer(edge)), TestClient(TestServer(create_admin_app(edge))) as client:
        yield client, metrics


def minted(metrics: Metrics) -> float:
    """Insertions answered with tokens, as /metrics counts them."""
    metrics.flush()
    return metrics.registry.get_sample_value("clickbus_insertions_total", {"outcome": "ok"}) or 0.0


@pytest.mark.parametrize(
    ("host", "local", "allowed"),
    [
        ("127.0.0.1:8081", "127.0.0.1", True),
        ("127.0.0.1", "127.0.0.1", True),
        ("localhost:8081", "127.0.0.1", True),
        ("LOCALHOST", "127.0.0.1", True),
        ("[::1]:8081", "127.0.0.1", True),  # loopback names the same machine
        ("127.0.0.2", "127.0.0.1", True),
        ("localhost", "::1", True),
        ("localhost", "::ffff:127.0.0.1", True),
        ("clickbus.internal:9", "10.0.0.5", True),  # from edge.admin_hosts
        ("10.0.0.5:8081", "10.0.0.5", True),
        ("localhost", "10.0.0.5", False),  # not listening on loopback: localhost is some other machine's name
        ("127.0.0.1", "10.0.0.5", False),
        ("10.0.0.6", "10.0.0.5", False),
        (EVIL, "127.0.0.1", False),
        (f"{EVIL}:8081", "127.0.0.1", False),
        ("localhost.evil.example", "127.0.0.1", False),
        ("127.0.0.1.nip.io", "127.0.0.1", False),
        ("localhost:x", "127.0.0.1", False),
        ("[::1", "127.0.0.1", False),
        ("", "127.0.0.1", False),
        (None, "127.0.0.1", False),
        ("localhost", None, False),
    ],
)
def test_host_allowed(host: str | None, local: str | None, allowed: bool) -> None:
    assert host_allowed(host, local, ("clickbus.internal",)) is allowed


def test_host_name_drops_the_port() -> None:
    assert [host_name(h) for h in ("a.b:1", "[::1]:2", "[::1]", "A.B", "a:b")] == ["a.b", "::1", "::1", "a.b", None]


async def test_dns_rebinding_cannot_mint(admin: tuple[Client, Metrics]) -> None:
    client, metrics = admin
    refused = await client.post("/v1/insert", json=INSERT, headers={"Host": EVIL})
    assert refused.status == 421
    assert "click_url" not in await refused.text()
    assert minted(metrics) == 0
    ok = await client.post("/v1/insert", json=INSERT, headers={"Host": "localhost"})
    assert ok.status == 200 and minted(metrics) == 1


async def test_every_route_refuses_a_foreign_host(admin: tuple[Client, Metrics]) -> None:
    client, _ = admin
    paths = {r.resource.canonical for r in client.app.router.routes() if r.resource is not None}
    assert {"/v1/insert", "/metrics", "/healthz", "/", "/v1/console/live", "/v1/reports"} <= paths
    for path in [*paths, "/no-such-route"]:
        for method in ("GET", "POST", "OPTIONS"):
            response = await client.request(method, path.replace("{", "").replace("}", ""), headers={"Host": EVIL})
            assert response.status == 421, (method, path)


@pytest.mark.parametrize("host", ["clickbus.internal", "CLICKBUS.INTERNAL:8081", "localhost", "127.0.0.1", "[::1]"])
async def test_own_names_are_answered(admin: tuple[Client, Metrics], host: str) -> None:
    client, _ = admin
    assert (await client.get("/metrics", headers={"Host": host})).status == 200


@pytest.mark.parametrize(("path", "status"), [("/healthz", 200), ("/nothing", 404), ("/metrics", 421)])
async def test_security_headers_on_every_answer(admin: tuple[Client, Metrics], path: str, status: int) -> None:
    client, _ = admin
    headers = {"Host": EVIL} if status == 421 else {}
    response = await client.get(path, headers=headers)
    assert response.status == status
    assert {k: response.headers.get(k) for k in SECURITY_HEADERS} == SECURITY_HEADERS


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None],
)
async def test_cross_origin_simple_posts_cannot_mint(admin: tuple[Client, Metrics], content_type: str | None) -> None:
    """What a page on another site can send without a preflight: the body is JSON, the type is not."""
    client, metrics = admin
    headers = {"Origin": f"http://{EVIL}"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    body = b'{"markup": "x", "auction": {"member_id": 13}}'
    response = await client.post("/v1/insert", data=body, headers=headers)
    assert response.status == 415
    assert not any(k.lower().startswith("access-control-") for k in response.headers)
    assert minted(metrics) == 0


async def test_no_cors_preflight_is_granted(admin: tuple[Client, Metrics]) -> None:
    client, _ = admin
    preflight = {
        "Origin": f"http://{EVIL}",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    response = await client.options("/v1/insert", headers=preflight)
    assert response.status >= 400
    assert not any(k.lower().startswith("access-control-") for k in response.headers)
