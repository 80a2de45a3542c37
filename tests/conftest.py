"""Shared fixtures: a configuration on a temporary data directory, a keyring, the edge app."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from clickbus.config import Config, from_mapping
from clickbus.edge import create_app
from clickbus.tokens import Keyring, new_key
from tests.edgeapp import AdminClient, admin_client

ClientFactory = Callable[..., Any]


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return from_mapping({"data_dir": str(tmp_path), "edge": {"public_url": "http://edge.test"}}, env={})


@pytest.fixture
def keyring() -> Keyring:
    return Keyring({"k1": new_key()}, "k1")


@pytest.fixture
async def client(aiohttp_client: ClientFactory, config: Config, keyring: Keyring) -> TestClient:
    """The edge on the embedded log in a temporary directory, through real HTTP."""
    return await aiohttp_client(create_app(config, keyring=keyring))


@pytest.fixture
async def admin(client: TestClient) -> AsyncIterator[AdminClient]:
    """The internal listener (insertion, metrics, OpenAPI) of the same edge as `client`, through real HTTP."""
    async with admin_client(client.app) as served:
        yield served
