"""Liveness and readiness: `ok` or `unavailable` to strangers, the reasons on the internal listener."""

from __future__ import annotations

import pytest

from clickbus.edge.appkeys import DRAINING, LOG
from tests.support.edgeapp import EdgeClient


async def test_healthz_and_readyz(client: EdgeClient, admin: EdgeClient) -> None:
    assert (await client.get("/healthz")).status == 200
    for listener in (client, admin):
        response = await listener.get("/readyz")
        assert response.status == 200 and await response.json() == {"status": "ok"}


@pytest.mark.parametrize("cause", ["log stopped", "draining"])
async def test_readyz_says_why_only_on_the_internal_listener(client: EdgeClient, admin: EdgeClient, cause: str) -> None:
    if cause == "draining":
        client.app[DRAINING].set()
        reason = "shutting down"
    else:
        await client.app[LOG].stop(1.0)
        reason = "embedded log is not running"
    public = await client.get("/readyz")
    assert public.status == 503 and await public.json() == {"status": "unavailable"}  # before: the reason too
    internal = await admin.get("/readyz")
    assert internal.status == 503 and await internal.json() == {"status": "unavailable", "reason": reason}
