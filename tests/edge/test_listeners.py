"""Two listeners: the public one serves browsers and publishers, the internal one the ad server and operators.

Only the ad server mints tokens: insertion is on the internal listener, and on the public one
only with an insert key (`401` without one, `403` for a member the key does not cover).
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from clickbus import cli
from clickbus.config import Config, from_mapping
from clickbus.edge import create_admin_app, create_app
from clickbus.edge.apikeys import ApiKeys
from clickbus.errors import ConfigError
from clickbus.metrics import create_metrics
from tests.support.configs import build_config
from tests.support.edgeapp import app_click_path

Client = TestClient[web.Request, web.Application]
INSERT_KEY = "cbi_test-insert-key"
MEMBER_KEY = "cbi_test-member-13-key"
LANDING = "https://shop.example/"
INSERT = {"markup": "<a href='${CLICK_URL}'>x</a>", "landing_url": LANDING, "auction": {"member_id": 13}}


def sha256_hex(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def make_config(tmp_path: Path, *, insert_keys: bool) -> Config:
    tables: dict[str, Any] = {"edge": {"public_url": "http://edge.test"}}
    if insert_keys:
        tables["insert_keys"] = {
            "adserver": {"sha256": sha256_hex(INSERT_KEY)},
            "member-13": {"sha256": sha256_hex(MEMBER_KEY), "members": [13]},
        }
    return build_config(tmp_path, **tables)


async def serve(app: web.Application) -> Client:
    client: Client = TestClient(TestServer(app))
    await client.start_server()
    return client


@pytest.fixture(params=[False, True], ids=["no-insert-keys", "insert-keys"])
async def listeners(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    public = create_app(make_config(tmp_path, insert_keys=request.param), metrics=create_metrics())
    public_client = await serve(public)
    admin_client = await serve(create_admin_app(public))
    yield public_client, admin_client, request.param
    await admin_client.close()
    await public_client.close()


# (method, path, status on the public listener, status on the internal one); `None`: depends on insert keys
ROUTES = [
    ("GET", "/healthz", 200, 200),
    ("GET", "/readyz", 200, 200),
    ("GET", "/metrics", 404, 200),
    ("GET", "/openapi.json", 404, 200),
    ("POST", "/v1/insert", None, 200),
    ("GET", "{click}", 302, 404),
    ("GET", "/i/{token}", 200, 404),
    ("POST", "/v1/beacon/click/{token}", 202, 404),
    ("POST", "/v1/beacon/impression/{token}", 202, 404),
    ("POST", "/api/v1/campaigns/click", 401, 404),
]


@pytest.mark.parametrize(("method", "path", "public_status", "admin_status"), ROUTES)
async def test_each_listener_serves_only_its_routes(
    listeners: tuple[Client, Client, bool], method: str, path: str, public_status: int | None, admin_status: int
) -> None:
    public, admin, keyed = listeners
    assert public.app is not None
    click = app_click_path(public.app)
    path = path.format(click=click, token=click.rsplit("/", 1)[1])
    body = INSERT if path == "/v1/insert" else {"user_id": "u"}
    statuses = []
    for client in (public, admin):
        response = await client.request(method, path, json=body, allow_redirects=False)
        statuses.append(response.status)
        assert "Server" not in response.headers
    expected_public = public_status if public_status is not None else (401 if keyed else 404)
    assert statuses == [expected_public, admin_status]


@pytest.fixture
async def public(tmp_path: Path) -> Any:
    client = await serve(create_app(make_config(tmp_path, insert_keys=True), metrics=create_metrics()))
    yield client
    await client.close()


UNAUTHORIZED = [
    {},
    {"Authorization": ""},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer "},
    {"Authorization": "Basic " + INSERT_KEY},
    {"Authorization": INSERT_KEY},
    {"Authorization": "Bearer cbi_not-a-key"},
    {"Authorization": "Bearer " + INSERT_KEY + "x"},
    {"Authorization": "Bearer " + sha256_hex(INSERT_KEY)},
]


async def test_every_unauthorized_insert_gets_the_same_401(public: Client) -> None:
    answers = set()
    for headers in UNAUTHORIZED:
        for body in (INSERT, "not json"):
            response = await public.post("/v1/insert", json=body, headers=headers)
            answers.add((response.status, response.headers["WWW-Authenticate"], await response.read()))
    assert answers == {(401, "Bearer", b'{"errors":[{"field":"","message":"a valid insert key is required"}]}')}


@pytest.mark.parametrize(
    ("key", "member", "status"),
    [(INSERT_KEY, 13, 200), (INSERT_KEY, 14, 200), (MEMBER_KEY, 13, 200), (MEMBER_KEY, 14, 403)],
)
async def test_an_insert_key_mints_only_for_its_members(public: Client, key: str, member: int, status: int) -> None:
    body = {**INSERT, "auction": {"member_id": member}}
    response = await public.post("/v1/insert", json=body, headers={"Authorization": f"Bearer {key}"})
    assert response.status == status
    if status == 403:
        assert await response.json() == {
            "errors": [{"field": "auction.member_id", "message": "this insert key may not insert for member 14"}]
        }
    else:
        assert (await response.json())["click_url"].startswith("http://edge.test/ck/")


def test_apikey_new_insert_prints_an_insert_key_snippet(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["apikey", "new", "--insert", "--name", "adserver-1", "--member", "13", "--member", "14"]) == 0
    out = capsys.readouterr().out
    key = re.search(r"^key:\s+(cbi_\S+)$", out, re.MULTILINE)
    assert key
    config = from_mapping(tomllib.loads(out[out.index("[insert_keys.") :]), env={})
    (configured,) = config.insert_keys
    assert (configured.name, configured.members) == ("adserver-1", (13, 14))
    assert ApiKeys(config.insert_keys).identify(f"Bearer {key.group(1)}") == configured


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ({"members": [13]}, "insert_keys.k.sha256: required"),
        ({"sha256": "ab"}, "insert_keys.k.sha256: expected 64 hex digits"),
        ({"sha256": "a" * 64, "members": ["13"]}, "insert_keys.k.members[0]: expected int"),
        ({"sha256": "a" * 64, "member": [13]}, "insert_keys.k.member: unknown key"),
    ],
)
def test_bad_insert_keys_fail_at_start_naming_the_key(table: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(problem)):
        from_mapping({"insert_keys": {"k": table}}, env={})


def test_admin_listen_defaults_to_loopback_and_takes_the_environment() -> None:
    assert str(from_mapping({}, env={}).edge.admin_listen) == "127.0.0.1:8081"
    env = {"CLICKBUS_ADMIN_LISTEN": "10.0.0.1:9001"}
    assert str(from_mapping({"edge": {"admin_listen": "127.0.0.1:1"}}, env=env).edge.admin_listen) == "10.0.0.1:9001"
