"""`GET /ck/{token}`: durable record first, then 302; never a redirect nobody signed."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from pytest_aiohttp import AiohttpClient

from clickbus.config import Config
from clickbus.creative import Inserter
from clickbus.edge import create_app
from clickbus.records import CLICK_REQUEST_FIELDS
from clickbus.tokens import AdContext, Keyring, new_key
from tests.support.configs import build_config
from tests.support.edgeapp import EdgeClient
from tests.support.records import recorded

AD = AdContext(
    member_id=13,
    auction_id_64=677373076784237441,
    user_id_64=2987961585469200312,
    creative_id=99,
    landing_url="https://shop.example/landing?x=1",
    custom_notify_data="cnd",
    userdata_json='{"segments":[2]}',
    redirect_hosts=("shop.example", "partner.example"),
)
UA = "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0"


def click_path(keyring: Keyring, ad: AdContext = AD, ttl_s: int = 3600, now: float | None = None) -> str:
    return "/ck/" + keyring.sign(ad, ttl_s=ttl_s, now=now)


async def test_click_is_recorded_then_redirected(client: EdgeClient, keyring: Keyring, config: Config) -> None:
    headers = {"User-Agent": UA, "Referer": "https://news.example/article"}
    response = await client.get(click_path(keyring), headers=headers, allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == AD.landing_url
    assert response.headers["Cache-Control"] == "no-store"
    [record] = await recorded(config)
    assert {k: record[k] for k in CLICK_REQUEST_FIELDS} == {
        "timestamp": record["timestamp"],
        "auction_id_64": 677373076784237441,
        "member_id": 13,
        "user_id_64": 2987961585469200312,
        "referer_url": "https://news.example/article",
        "user_agent": UA,
        "userdata_json": '{"segments":[2]}',
        "custom_notify_data": "cnd",
        "test": False,
    }
    assert len(record["timestamp"]) == 19 and record["timestamp"][10] == " "
    assert record["source"] == "redirect" and record["creative_id"] == 99
    assert record["landing_url"] == AD.landing_url
    assert record["client_ip"] == "127.0.0.0"
    assert (record["valid"], record["reason"]) == (True, None)


async def test_click_ids_are_unique_and_time_ordered(client: EdgeClient, keyring: Keyring, config: Config) -> None:
    for _ in range(20):
        assert (await client.get(click_path(keyring), allow_redirects=False)).status == 302
    ids = [r["click_id"] for r in await recorded(config)]
    assert len(set(ids)) == 20 and ids == sorted(ids)


async def test_head_redirects_without_recording(client: EdgeClient, keyring: Keyring, config: Config) -> None:
    response = await client.head(click_path(keyring), allow_redirects=False)
    assert response.status == 302 and response.headers["Location"] == AD.landing_url
    assert await recorded(config) == []


async def test_expired_token_redirects_and_records_invalid(
    client: EdgeClient, keyring: Keyring, config: Config
) -> None:
    response = await client.get(click_path(keyring, ttl_s=60, now=1_000_000), allow_redirects=False)
    assert response.status == 302 and response.headers["Location"] == AD.landing_url
    [record] = await recorded(config)
    assert (record["valid"], record["reason"]) == (False, "expired")


def _tampered(keyring: Keyring) -> str:
    token = keyring.sign(AD, ttl_s=60)
    return token[:-3] + ("AAA" if token[-3:] != "AAA" else "BBB")


@pytest.mark.parametrize(
    "make_path",
    [
        lambda k: "/ck/" + _tampered(k),
        lambda k: "/ck/" + k.sign(AD, ttl_s=60)[:-10],
        lambda k: "/ck/" + k.sign(AD, ttl_s=60) + "A",
        lambda k: "/ck/x",
        lambda k: "/ck/" + "A" * 20000,
        lambda k: "/ck/" + Keyring({"k1": new_key()}, "k1").sign(AD, ttl_s=60),
        lambda k: "/ck/" + quote("\r\nLocation: https://evil.example/"),
        lambda k: "/ck/%00",
    ],
    ids=["tampered", "truncated", "extended", "short", "oversized", "forged", "crlf", "nul"],
)
async def test_bad_tokens_get_400_and_no_location(
    client: EdgeClient, keyring: Keyring, config: Config, make_path: Any
) -> None:
    response = await client.get(make_path(keyring), allow_redirects=False)
    assert response.status in (400, 404, 414, 431)
    assert "Location" not in response.headers
    assert await recorded(config) == []


async def test_empty_token_is_not_found(client: EdgeClient) -> None:
    response = await client.get("/ck/", allow_redirects=False)
    assert response.status == 404 and "Location" not in response.headers


@pytest.mark.parametrize(
    ("appended", "expected"),
    [
        ("https://partner.example/deep?id=7", "https://partner.example/deep?id=7"),
        ("https://www.shop.example/p", "https://www.shop.example/p"),
        ("https://evil.example/", AD.landing_url),
        ("//evil.example/", AD.landing_url),
        ("javascript:alert(document.cookie)", AD.landing_url),
        ("https://shop.example@evil.example/", AD.landing_url),
        ("https://evil.example\\@shop.example/", AD.landing_url),
        ("https://shop.example/\r\nSet-Cookie: a=b", AD.landing_url),
        ("https://shop.example.evil.example/", AD.landing_url),
    ],
)
async def test_appended_destination_only_to_allowed_hosts(
    client: EdgeClient, keyring: Keyring, appended: str, expected: str
) -> None:
    response = await client.get(f"{click_path(keyring)}?r={quote(appended, safe='')}", allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == expected


async def test_landing_signed_under_looser_policy_is_not_followed(
    client: EdgeClient, keyring: Keyring, config: Config
) -> None:
    path = click_path(keyring, AdContext(member_id=1, landing_url="javascript:alert(1)"))
    response = await client.get(path, allow_redirects=False)
    assert response.status == 400 and "Location" not in response.headers
    assert await recorded(config) == []


async def test_inserted_click_url_round_trips(client: EdgeClient, keyring: Keyring) -> None:
    done = Inserter(keyring, str(client.make_url("")), ttl_s=60).insert("", AD)
    assert done.click_url is not None
    response = await client.get(done.click_url.removeprefix(str(client.make_url(""))), allow_redirects=False)
    assert response.headers["Location"] == AD.landing_url


@pytest.mark.parametrize(
    ("landing", "appended", "location"),
    [
        ("https://shop.example/caf\u00e9?q=\u00fc", None, "https://shop.example/caf%C3%A9?q=%C3%BC"),
        (AD.landing_url, "https://shop.example/\u00e9t\u00e9", "https://shop.example/%C3%A9t%C3%A9"),
        (AD.landing_url, "https://shop.example/\u2028x", AD.landing_url),  # refused: the signed landing
        (AD.landing_url, "https://shop.example/\u202ex", AD.landing_url),
        (AD.landing_url, "https://shop.example/\u0085", AD.landing_url),
        (AD.landing_url, "https://evil.com%2f.shop.example/", AD.landing_url),
        ("https://shop.example/\u202ex", None, None),  # signed under an older policy: 400
    ],
)
async def test_location_is_ascii_and_never_carries_controls(
    client: EdgeClient, keyring: Keyring, landing: str, appended: str | None, location: str | None
) -> None:
    path = click_path(keyring, AdContext(member_id=13, landing_url=landing, redirect_hosts=("shop.example",)))
    query = f"?r={quote(appended, safe='')}" if appended else ""
    response = await client.get(path + query, allow_redirects=False)
    assert response.status == (400 if location is None else 302)
    assert response.headers.get("Location") == location


async def test_the_record_says_what_location_says(client: EdgeClient, keyring: Keyring, config: Config) -> None:
    landing = "https://shop.example/caf\u00e9?q=\u00fc"
    path = click_path(keyring, AdContext(member_id=13, landing_url=landing, redirect_hosts=("shop.example",)))
    response = await client.get(path, allow_redirects=False)
    [record] = await recorded(config)
    assert record["landing_url"] == response.headers["Location"] == "https://shop.example/caf%C3%A9?q=%C3%BC"


@pytest.mark.parametrize(
    "landing", ["https://shop\u3164.example/", "https://shop.example/\u034fx", "https://shop.example/\ufff9"]
)
async def test_invisible_landings_signed_under_an_older_policy_are_not_followed(
    client: EdgeClient, keyring: Keyring, config: Config, landing: str
) -> None:
    response = await client.get(
        click_path(keyring, AdContext(member_id=13, landing_url=landing)), allow_redirects=False
    )
    assert response.status == 400 and "Location" not in response.headers
    assert await recorded(config) == []


PRIVATE_HOSTS = ("127.0.0.1", "[::1]", "169.254.169.254", "10.0.0.1", "localhost")


@pytest.mark.parametrize("host", PRIVATE_HOSTS)
async def test_private_landings_are_neither_followed_nor_appended(
    client: EdgeClient, keyring: Keyring, config: Config, host: str
) -> None:
    signed = click_path(keyring, AdContext(member_id=13, landing_url=f"http://{host}/"))
    response = await client.get(signed, allow_redirects=False)
    assert response.status == 400 and "Location" not in response.headers
    hosts = (*AD.redirect_hosts, host.strip("[]"), host)  # a token signed under an older, looser policy
    appended = f"{click_path(keyring, AdContext(member_id=13, landing_url=AD.landing_url, redirect_hosts=hosts))}"
    response = await client.get(f"{appended}?r={quote(f'http://{host}/x', safe='')}", allow_redirects=False)
    assert (response.status, response.headers["Location"]) == (302, AD.landing_url)
    [record] = await recorded(config)
    assert record["landing_url"] == AD.landing_url


async def test_private_landings_are_followed_when_development_allows_them(
    aiohttp_client: AiohttpClient, tmp_path: Path, keyring: Keyring
) -> None:
    config = build_config(tmp_path, edge={"public_url": "http://edge.test", "allow_private_landings": True})
    client = await aiohttp_client(create_app(config, keyring=keyring))
    ad = AdContext(member_id=13, landing_url="http://127.0.0.1:8000/x", redirect_hosts=("localhost",))
    response = await client.get(click_path(keyring, ad), allow_redirects=False)
    assert (response.status, response.headers["Location"]) == (302, "http://127.0.0.1:8000/x")
    response = await client.get(f"{click_path(keyring, ad)}?r=http://localhost/y", allow_redirects=False)
    assert (response.status, response.headers["Location"]) == (302, "http://localhost/y")


@pytest.mark.parametrize("entry", ["com", "example.com.", "*", ".", "co.uk"])
async def test_redirect_hosts_signed_under_an_older_policy_allow_nothing(
    client: EdgeClient, keyring: Keyring, entry: str
) -> None:
    ad = AdContext(member_id=13, landing_url=AD.landing_url, redirect_hosts=(entry,))
    for appended in ("https://evil.com/", "https://www.evil.co.uk/", "https://example.com./"):
        response = await client.get(f"{click_path(keyring, ad)}?r={quote(appended, safe='')}", allow_redirects=False)
        assert (response.status, response.headers["Location"]) == (302, AD.landing_url)
