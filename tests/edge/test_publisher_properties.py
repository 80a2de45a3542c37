"""Property tests: the publisher parsers over random JSON, and the app over random bodies and tokens (never a 5xx)."""

from __future__ import annotations

import json
import re
import string
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from clickbus.config import CampaignConfig
from clickbus.edge.server_clicks import DEVICES, parse_click, too_long
from clickbus.edge.vtex_schema import MAX_POS, body_errors, parse_body, parse_pos
from clickbus.iso3166 import ALPHA_2
from clickbus.log import EmbeddedLog, Topic
from tests.edge.publisher_support import (
    API_KEY,
    CAMPAIGN,
    MAX_BODY,
    MAX_TEXT,
    PLACEMENTS,
    insertion,
    path_of,
    publisher_config,
)
from tests.support.edgeapp import EdgeClient
from tests.support.records import records

__all__ = ["publisher_config"]  # the `config` fixture

KEYS = st.sampled_from(["user_id", "session_id", "campaignId", "placement", "location", "device"]) | st.text(max_size=8)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.text(min_size=60, max_size=70)  # around edge.max_text_chars of the app tests (MAX_TEXT)
    | st.sampled_from([CAMPAIGN, *PLACEMENTS, "US", "mobile", "tv", "us"])
)
JSON = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5), max_leaves=12
)
OBJECTS = st.dictionaries(KEYS, JSON, max_size=6)
ERROR_KEYS = ["instancePath", "keyword", "message", "params", "schemaPath"]
SHORT_TEXT = 8  # a small edge.max_text_chars, so that generated ids cross it
APP_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@given(JSON | OBJECTS)
def test_beacon_body_is_valid_exactly_when_the_schema_says_so(body: Any) -> None:
    errors = body_errors(body, SHORT_TEXT)
    present = [body[k] for k in ("user_id", "session_id") if isinstance(body, dict) and k in body]
    fits = all(isinstance(v, str) and len(v) <= SHORT_TEXT for v in present)
    assert (errors == []) == (bool(present) and fits)
    assert all(list(error) == ERROR_KEYS for error in errors)
    parsed, again = parse_body(body, SHORT_TEXT)
    assert again == errors and (parsed is None) == bool(errors)


@given(st.text(max_size=30) | st.integers(min_value=-(10**20), max_value=10**20).map(str))
@example("-0")
@example("٣")
@example(" 1")
@example("007")
@example("00")
def test_pos_is_accepted_exactly_when_it_is_a_small_non_negative_integer(text: str) -> None:
    value, errors = parse_pos([text])
    integer = re.fullmatch(r"0|[1-9][0-9]*", text)
    expected = int(text) if integer and 0 <= int(text) <= MAX_POS else None
    assert value == expected and (errors == []) == (expected is not None)


@given(JSON | OBJECTS)
def test_server_click_parser_accepts_only_configured_campaigns_and_known_values(body: Any) -> None:
    campaigns = {CAMPAIGN: CampaignConfig(CAMPAIGN, 13, tuple(PLACEMENTS))}
    click, problems = parse_click(body, campaigns)
    assert (click is None) == bool(problems)
    if click is not None:
        assert body["campaignId"] == CAMPAIGN and click.placement in PLACEMENTS
        assert click.location in ALPHA_2 | {""} and click.device in (*DEVICES, "")
    assert all(isinstance(p, str) and p and ";" not in p for p in problems)


@pytest.fixture
async def beacons(client: EdgeClient) -> dict[str, str]:
    """Beacon paths from one real insertion (made once per test, not per example)."""
    urls: dict[str, str] = (await insertion(client))["beacons"]
    return {kind: path_of(url) for kind, url in urls.items()}


@APP_SETTINGS
@given(body=JSON | OBJECTS, kind=st.sampled_from(["click", "impression"]))
async def test_random_beacon_bodies_get_202_or_422(
    client: EdgeClient, beacons: dict[str, str], body: Any, kind: str
) -> None:
    data = json.dumps(body)
    response = await client.post(beacons[kind], data=data, headers={"Content-Type": "application/json"})
    expected = 413 if len(data.encode()) > MAX_BODY else 422 if body_errors(body, MAX_TEXT) else 202
    assert response.status == expected
    await response.read()


@APP_SETTINGS
@given(body=JSON | OBJECTS)
async def test_random_server_click_bodies_get_200_or_400(client: EdgeClient, body: Any) -> None:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"}
    data = json.dumps(body)
    response = await client.post("/api/v1/campaigns/click", data=data, headers=headers)
    expected = (413,) if len(data.encode()) > MAX_BODY else (422,) if too_long(body, MAX_TEXT) else (200, 400)
    assert response.status in expected
    answer = await response.json()
    assert list(answer) == ["status", "message"]


TOKENS = st.text(string.ascii_letters + string.digits + "-_", min_size=1, max_size=300) | st.text(
    st.characters(exclude_characters="/?#%", exclude_categories=["Cs"]), min_size=1, max_size=50
)


@APP_SETTINGS
@given(token=TOKENS)
async def test_random_tokens_are_refused_and_nothing_is_recorded(
    client: EdgeClient, log: EmbeddedLog, token: str
) -> None:
    for method, path in (("POST", "/v1/beacon/click/"), ("POST", "/v1/beacon/impression/"), ("GET", "/i/")):
        response = await client.request(method, path + token, json={"user_id": "u"})
        assert 400 <= response.status < 500
        await response.read()
    assert await records(log, Topic.CLICKS) == []
    assert await records(log, Topic.IMPRESSIONS) == []


@APP_SETTINGS
@given(
    data=st.binary(max_size=2048),
    content_type=st.sampled_from(["application/json", "text/plain", "application/json; charset=utf-8", ""]),
    target=st.sampled_from(["click", "impression", "server"]),
)
async def test_random_bytes_never_get_a_5xx(
    client: EdgeClient, beacons: dict[str, str], data: bytes, content_type: str, target: str
) -> None:
    if target == "server":
        path, headers = "/api/v1/campaigns/click", {"Authorization": f"Bearer {API_KEY}"}
    else:
        path, headers = beacons[target], {}
    response = await client.post(path, data=data, headers={**headers, "Content-Type": content_type})
    assert response.status < 500
    await response.read()


@APP_SETTINGS
@given(authorization=st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80))
async def test_random_authorization_headers_get_the_same_401(client: EdgeClient, authorization: str) -> None:
    headers = {"Authorization": authorization, "Content-Type": "application/json"}
    response = await client.post("/api/v1/campaigns/click", data=b"{}", headers=headers)
    assert response.status == 401
    assert await response.read() == b'{"status":"error","message":"unauthorized"}'
