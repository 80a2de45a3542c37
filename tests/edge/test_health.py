"""Liveness and readiness."""

from __future__ import annotations

from clickbus.edge.appkeys import DRAINING, LOG
from tests.support.edgeapp import EdgeClient


async def test_healthz_and_readyz(client: EdgeClient) -> None:
    assert (await client.get("/healthz")).status == 200
    response = await client.get("/readyz")
    assert response.status == 200 and (await response.json())["status"] == "ok"


async def test_readyz_is_503_when_the_log_cannot_write(client: EdgeClient) -> None:
    await client.app[LOG].stop(1.0)
    response = await client.get("/readyz")
    assert response.status == 503
    assert "not running" in (await response.json())["reason"]


async def test_readyz_is_503_while_draining(client: EdgeClient) -> None:
    client.app[DRAINING].set()
    response = await client.get("/readyz")
    assert response.status == 503 and (await response.json())["reason"] == "shutting down"
