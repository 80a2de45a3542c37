"""Liveness and readiness."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from clickbus.edge.appkeys import DRAINING, LOG


async def test_healthz_and_readyz(client: TestClient) -> None:
    assert (await client.get("/healthz")).status == 200
    response = await client.get("/readyz")
    assert response.status == 200 and (await response.json())["status"] == "ok"


async def test_readyz_is_503_when_the_log_cannot_write(client: TestClient) -> None:
    await client.app[LOG].stop(1.0)
    response = await client.get("/readyz")
    assert response.status == 503
    assert "not running" in (await response.json())["reason"]


async def test_readyz_is_503_while_draining(client: TestClient) -> None:
    client.app[DRAINING].set()
    response = await client.get("/readyz")
    assert response.status == 503 and (await response.json())["reason"] == "shutting down"
