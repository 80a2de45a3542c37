"""`POST /v1/insert`: the wire format, and every error listed at once."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clickbus.tokens import Keyring
from tests.support.edgeapp import EdgeClient

BODY = {
    "markup": '<a href="${CLICK_URL}https://shop.example/p">buy</a><img src="${IMPRESSION_URL}">',
    "landing_url": "https://shop.example/",
    "auction": {
        "auction_id_64": 677373076784237441,
        "member_id": 13,
        "user_id_64": 2987961585469200312,
        "creative_id": 5,
        "custom_notify_data": "cnd",
        "userdata_json": '{"segments":[2]}',
        "test": True,
    },
}


async def test_insert_answers_markup_and_urls(client: EdgeClient, keyring: Keyring) -> None:
    response = await client.post("/v1/insert", json=BODY)
    assert response.status == 200
    body = await response.json()
    assert {"markup", "click_url", "impression_url"} <= set(body)
    assert body["click_url"].startswith("http://edge.test/ck/")
    assert body["impression_url"].startswith("http://edge.test/i/")
    assert f'<img src="{body["impression_url"]}">' in body["markup"]
    ad = keyring.verify(body["click_url"].rsplit("/", 1)[1]).ad
    assert (ad.member_id, ad.auction_id_64, ad.creative_id, ad.test) == (13, 677373076784237441, 5, True)
    assert (ad.custom_notify_data, ad.userdata_json, ad.landing_url) == ("cnd", '{"segments":[2]}', BODY["landing_url"])


async def test_minimal_body(client: EdgeClient) -> None:
    response = await client.post("/v1/insert", json={"markup": "<b>${AUCTION_ID}</b>", "auction": {"member_id": 1}})
    assert response.status == 200
    assert (await response.json())["markup"] == "<b>0</b>"


async def test_every_error_is_listed(client: EdgeClient) -> None:
    body = {
        "markup": 7,
        "landing_url": "javascript:alert(1)",
        "wrap_links": "yes",
        "auction": {"auction_id_64": -1, "user_id_64": "x", "test": "no", "userdata_json": {}},
    }
    response = await client.post("/v1/insert", json=body)
    assert response.status == 422
    fields = [e["field"] for e in (await response.json())["errors"]]
    assert fields == [
        "markup",
        "landing_url",
        "landing_url",
        "wrap_links",
        "auction.member_id",
        "auction.auction_id_64",
        "auction.user_id_64",
        "auction.userdata_json",
        "auction.test",
    ]


async def test_refused_landing_in_markup_is_422(client: EdgeClient) -> None:
    body = {**BODY, "markup": '<a href="${CLICK_URL}//evil.example/">x</a>'}
    response = await client.post("/v1/insert", json=body)
    assert response.status == 422
    assert (await response.json())["errors"][0]["field"] == "markup ${CLICK_URL}"


@pytest.mark.parametrize(
    ("data", "headers", "status"),
    [
        (b"{", {"Content-Type": "application/json"}, 400),
        (b"", {"Content-Type": "application/json"}, 400),
        (b"[]", {"Content-Type": "application/json"}, 422),
        (b"null", {"Content-Type": "application/json"}, 422),
        (orjson.dumps(BODY), {"Content-Type": "text/plain"}, 415),
        (b'{"markup": "' + b"x" * 70_000 + b'"}', {"Content-Type": "application/json"}, 413),
    ],
)
async def test_malformed_bodies(client: EdgeClient, data: bytes, headers: dict[str, str], status: int) -> None:
    response = await client.post("/v1/insert", data=data, headers=headers)
    assert response.status == status
    assert (await response.json())["errors"]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)
BODIES = st.fixed_dictionaries(
    {},
    optional={
        "markup": JSON | st.text(),
        "landing_url": JSON | st.text(),
        "auction": st.fixed_dictionaries({}, optional={k: JSON for k in BODY["auction"]}) | JSON,
    },
)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(body=BODIES | JSON)
async def test_random_bodies_never_5xx(client: EdgeClient, body: Any) -> None:
    data = json.dumps(body)  # the stdlib writes integers of any size, as a hostile client might
    response = await client.post("/v1/insert", data=data, headers={"Content-Type": "application/json"})
    assert response.status in (200, 400, 422)
