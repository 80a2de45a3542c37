"""An edge app for tests: fresh metrics, click paths minted by its own keys (configurations: `configs.edge_config`).

Kept out of conftest.py so that other test modules' fixtures merge without conflicts; test
modules define their fixtures from these functions.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from clickbus.config import Config
from clickbus.creative import Inserter
from clickbus.edge import create_admin_app, create_app
from clickbus.edge.appkeys import INSERTER
from clickbus.landing import check_landing
from clickbus.metrics import Metrics, create_metrics
from clickbus.tokens import AdContext

LANDING = "https://landing.example/page"

# What `aiohttp_client(app)` answers for an edge app: the type of every edge test client.
EdgeClient = TestClient[web.Request, web.Application]


def make_app(config: Config) -> tuple[web.Application, Metrics]:
    """An edge app on `config` with metrics of its own."""
    metrics = create_metrics()
    return create_app(config, metrics=metrics), metrics


@contextlib.asynccontextmanager
async def admin_client(edge: web.Application | None) -> AsyncIterator[EdgeClient]:
    """The internal listener's app over `edge`'s objects (insertion, metrics, OpenAPI), served while in use."""
    assert edge is not None
    async with TestClient(TestServer(create_admin_app(edge))) as admin:
        yield admin


def click_path(inserter: Inserter, *, auction_id: int = 1, member_id: int = 7, landing: str = LANDING) -> str:
    """The path of a click URL minted by the edge's own inserter."""
    ad = AdContext(member_id=member_id, auction_id_64=auction_id, landing_url=check_landing(landing))
    return inserter.click_url(ad).removeprefix(inserter.public_url)


def app_click_path(app: web.Application, *, auction_id: int = 1) -> str:
    """The path of a click URL minted by `app`'s own inserter."""
    return click_path(app[INSERTER], auction_id=auction_id)
