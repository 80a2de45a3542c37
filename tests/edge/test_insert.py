"""`POST /v1/insert`: the wire format, and every error listed at once."""

from __future__ import annotations

import json
import re
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


async def test_insert_answers_markup_and_urls(admin: EdgeClient, keyring: Keyring) -> None:
    response = await admin.post("/v1/insert", json=BODY)
    assert response.status == 200
    body = await response.json()
    assert {"markup", "click_url", "impression_url"} <= set(body)
    assert body["click_url"].startswith("http://edge.test/ck/")
    assert body["impression_url"].startswith("http://edge.test/i/")
    assert f'<img src="{body["impression_url"]}">' in body["markup"]
    ad = keyring.verify(body["click_url"].rsplit("/", 1)[1]).ad
    assert (ad.member_id, ad.auction_id_64, ad.creative_id, ad.test) == (13, 677373076784237441, 5, True)
    assert (ad.custom_notify_data, ad.userdata_json, ad.landing_url) == ("cnd", '{"segments":[2]}', BODY["landing_url"])


async def test_minimal_body(admin: EdgeClient) -> None:
    response = await admin.post("/v1/insert", json={"markup": "<b>${AUCTION_ID}</b>", "auction": {"member_id": 1}})
    assert response.status == 200
    assert (await response.json())["markup"] == "<b>0</b>"


async def test_every_error_is_listed(admin: EdgeClient) -> None:
    body = {
        "markup": 7,
        "landing_url": "javascript:alert(1)",
        "wrap_links": "yes",
        "auction": {"auction_id_64": -1, "user_id_64": "x", "test": "no", "userdata_json": {}},
    }
    response = await admin.post("/v1/insert", json=body)
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


async def test_refused_landing_in_markup_is_422(admin: EdgeClient) -> None:
    body = {**BODY, "markup": '<a href="${CLICK_URL}//evil.example/">x</a>'}
    response = await admin.post("/v1/insert", json=body)
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
async def test_malformed_bodies(admin: EdgeClient, data: bytes, headers: dict[str, str], status: int) -> None:
    response = await admin.post("/v1/insert", data=data, headers=headers)
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
async def test_random_bodies_never_5xx(admin: EdgeClient, body: Any) -> None:
    data = json.dumps(body)  # the stdlib writes integers of any size, as a hostile client might
    response = await admin.post("/v1/insert", data=data, headers={"Content-Type": "application/json"})
    assert response.status in (200, 400, 422)


@pytest.mark.parametrize(
    ("auction", "field"),
    [
        ({"userdata_json": "u" * 60_000}, "auction.userdata_json"),
        ({"custom_notify_data": "c" * 3_000}, "auction.custom_notify_data"),
        ({"userdata_json": "u" * 1_000, "custom_notify_data": "c" * 2_000}, "auction.custom_notify_data"),
        (
            {"redirect_hosts": [f"{'h' * 60}.{'h' * 60}.{'h' * 60}.{'h' * 58}{i:02}.example" for i in range(16)]},
            "auction.redirect_hosts",
        ),
    ],
)
async def test_context_too_long_for_a_url_is_refused_naming_the_field(
    admin: EdgeClient, auction: dict[str, Any], field: str
) -> None:
    body = {**BODY, "auction": {**BODY["auction"], **auction}}  # type: ignore[dict-item]
    response = await admin.post("/v1/insert", json=body)
    assert response.status == 422
    errors = (await response.json())["errors"]
    assert [e["field"] for e in errors] == [field]
    assert "edge.max_url_bytes" in errors[0]["message"]


async def test_longest_url_allowed_is_served_and_clicks(client: EdgeClient, admin: EdgeClient) -> None:
    """Just under `edge.max_url_bytes`, the URL is minted and its click redirects."""
    size, longest = 1000, 0
    while longest < 4096:
        body = {**BODY, "auction": {**BODY["auction"], "userdata_json": "u" * size}}  # type: ignore[dict-item]
        response = await admin.post("/v1/insert", json=body)
        if response.status == 422:
            break
        urls = await response.json()
        longest = max(len(urls["beacons"]["impression"]), len(urls["click_url"]))
        size += 100
    assert response.status == 422 and 3900 < longest <= 4096
    click = await client.get(urls["click_url"].removeprefix("http://edge.test"), allow_redirects=False)
    assert click.status == 302


@pytest.mark.parametrize("links", [10, 1000])  # inline, and on the insertion thread (over INLINE_MARKUP_CHARS)
async def test_large_markups_are_inserted_alike(admin: EdgeClient, keyring: Keyring, links: int) -> None:
    markup = "".join(f'<a href="https://shop.example/{i}">{i}</a>' for i in range(links))
    body = {**BODY, "markup": markup, "wrap_links": True}
    response = await admin.post("/v1/insert", json=body)
    assert response.status == 200
    tokens = re.findall(r'href="http://edge\.test/ck/([\w-]+)"', (await response.json())["markup"])
    assert [keyring.verify(t).ad.landing_url for t in tokens] == [f"https://shop.example/{i}" for i in range(links)]


@pytest.mark.parametrize(
    "entry", [".", "*", "%2e", "com", "co.uk", "github.io", "localhost", "127.0.0.1", "shop.example."]
)
async def test_redirect_hosts_are_host_names_and_not_public_suffixes(admin: EdgeClient, entry: str) -> None:
    body = {**BODY, "auction": {**BODY["auction"], "redirect_hosts": ["shop.example", entry]}}  # type: ignore[dict-item]
    response = await admin.post("/v1/insert", json=body)
    assert response.status == 422
    [error] = (await response.json())["errors"]
    assert error["field"] == "auction.redirect_hosts" and repr(entry) in error["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"markup": "", "landing_url": "http://[::1]/"}, "landing_url"),
        ({"markup": '<a href="${CLICK_URL}http://10.0.0.1/">x</a>'}, "markup ${CLICK_URL}"),
        ({"markup": '<a href="http://localhost/">x</a>', "wrap_links": True}, "markup <a href>"),
    ],
)
async def test_private_landings_are_refused_at_insertion(admin: EdgeClient, body: dict[str, Any], field: str) -> None:
    response = await admin.post("/v1/insert", json={**body, "auction": {"member_id": 1}})
    assert response.status == 422
    assert [e["field"] for e in (await response.json())["errors"]] == [field]
