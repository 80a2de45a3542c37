"""The OpenAPI description: served, and naming exactly the routes the edge has."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from pytest_aiohttp import AiohttpClient

from clickbus import __version__
from clickbus.edge import create_admin_app
from tests.support.configs import edge_config
from tests.support.edgeapp import make_app


def spec() -> dict[str, object]:
    return dict(json.loads(resources.files("clickbus").joinpath("openapi.json").read_bytes()))


def test_spec_names_exactly_the_routes_of_the_edge(tmp_path: Path) -> None:
    app, _ = make_app(edge_config(tmp_path))
    routes = {  # both listeners': the spec describes the edge, whichever address serves a path
        (route.resource.canonical, route.method.lower())
        for served in (app, create_admin_app(app))
        for route in served.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    paths = spec()["paths"]
    assert isinstance(paths, dict)
    described = {(path, method) for path, item in paths.items() for method in item if method != "parameters"}
    assert spec()["openapi"] == "3.1.0"
    # aiohttp serves HEAD beside every GET; the spec describes it where it means something else
    heads = {(path, method) for path, method in described if method == "head"}
    assert {(path, "get") for path, _ in heads} <= routes
    assert heads == {("/ck/{token}", "head"), ("/i/{token}", "head")}
    assert routes == described - heads


async def test_spec_is_served(tmp_path: Path, aiohttp_client: AiohttpClient) -> None:
    app, _ = make_app(edge_config(tmp_path))
    client = await aiohttp_client(create_admin_app(app))
    response = await client.get("/openapi.json")
    assert response.status == 200
    assert response.content_type == "application/json"
    served, shipped = await response.json(), spec()
    assert served["info"].pop("version") == __version__  # the one place the version is declared
    info = shipped["info"]
    assert isinstance(info, dict)
    info.pop("version")
    assert served == shipped
