"""ENS-style server-side clicks over the real app: the reference's example, auth, limits, validation, the log."""

from __future__ import annotations

import hashlib
import hmac
import re
import shlex
import tomllib
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest

from clickbus import cli
from clickbus.config import ApiKeyConfig, from_mapping
from clickbus.edge.apikeys import ApiKeys, RateLimiter, bearer
from clickbus.log import EmbeddedLog, Topic
from clickbus.records import ClickRecord
from tests.edge.publisher_support import (
    API_KEY,
    CAMPAIGN,
    MAX_BODY,
    MAX_TEXT,
    MEMBER,
    REFERENCE,
    SLOW_KEY,
    publisher_config,
)
from tests.support.edgeapp import EdgeClient
from tests.support.records import records

__all__ = ["publisher_config"]  # the `config` fixture

ENS = (REFERENCE / "ens-click-api.txt").read_text(encoding="utf-8")


def documented_answer(heading: str) -> Any:
    """The JSON object printed after a response heading of the ENS page."""
    match = re.search(re.escape(heading) + r".*?(\{.*?\})", ENS, re.DOTALL)
    assert match, heading
    return orjson.loads(match.group(1))


def documented_request() -> tuple[str, dict[str, str], bytes]:
    """Path, headers and body of the page's curl example."""
    curl = re.search(r"^curl .*?'\n", ENS, re.DOTALL | re.MULTILINE)
    assert curl
    words = shlex.split(curl.group(0).replace("\\\n", " "))
    url = words[words.index("-X") + 2]
    headers = dict(words[i + 1].split(": ", 1) for i, w in enumerate(words) if w == "-H")
    return urlsplit(url).path, headers, words[words.index("-d") + 1].encode()


def auth(key: str = API_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def post(client: EdgeClient, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    response = await client.post("/api/v1/campaigns/click", json=body, headers=auth() if headers is None else headers)
    assert response.content_type == "application/json"
    return response.status, orjson.loads(await response.read())


async def test_reference_request_example_gets_the_reference_success(client: EdgeClient, log: EmbeddedLog) -> None:
    path, headers, body = documented_request()
    headers["Authorization"] = headers["Authorization"].replace("YOUR_API_KEY", API_KEY)
    response = await client.post(path, data=body, headers=headers)
    assert response.status == 200
    assert orjson.loads(await response.read()) == documented_answer("200 — Success")
    (raw,) = await records(log, Topic.CLICKS)
    record = ClickRecord(**raw)
    assert (record.source, record.member_id, record.campaign_id) == ("server", MEMBER, CAMPAIGN)
    assert (record.placement, record.location, record.device) == ("header_banner", "US", "mobile")
    assert record.valid and record.client_ip == "127.0.0.0"


async def test_reference_bad_request_example_is_answered_exactly(client: EdgeClient, log: EmbeddedLog) -> None:
    assert await post(client, {"placement": "header_banner"}) == (400, documented_answer("400 — Bad Request"))
    assert await records(log, Topic.CLICKS) == []


@pytest.mark.parametrize(
    "headers",
    [
        {},
        auth("cbk_wrong"),
        auth(""),
        {"Authorization": "Basic " + API_KEY},
        {"Authorization": API_KEY},
        {"Authorization": "Bearer"},
    ],
)
async def test_missing_or_unknown_keys_get_the_reference_401(
    client: EdgeClient, log: EmbeddedLog, headers: dict[str, str]
) -> None:
    body = {"campaignId": CAMPAIGN, "placement": "header_banner"}
    assert await post(client, body, headers) == (401, documented_answer("401 — Unauthorized"))
    assert await records(log, Topic.CLICKS) == []


async def test_401_answers_are_byte_identical_for_missing_and_unknown_keys(client: EdgeClient) -> None:
    answers = []
    for headers in ({}, auth("cbk_wrong")):
        response = await client.post("/api/v1/campaigns/click", json={}, headers=headers)
        answers.append((response.status, dict(response.headers) | {"Date": ""}, await response.read()))
    assert answers[0] == answers[1]


async def test_bearer_scheme_is_case_insensitive(client: EdgeClient) -> None:
    status, _ = await post(
        client, {"campaignId": CAMPAIGN, "placement": "article_inline"}, {"Authorization": f"bearer {API_KEY}"}
    )
    assert status == 200


def test_identify_does_the_same_work_for_every_header(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = [ApiKeyConfig(f"k{i}", hashlib.sha256(f"key{i}".encode()).digest()) for i in range(3)]
    calls: list[int] = []
    compare = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append(1)
        return compare(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)  # the module clickbus.edge.apikeys compares with
    api_keys = ApiKeys(keys)
    for header in (None, "", "Bearer ", "Bearer key1", "Bearer nope", "Token key1"):
        calls.clear()
        found = api_keys.identify(header)
        assert len(calls) == 3
        assert (found.name if found else None) == ("k1" if header == "Bearer key1" else None)


def test_an_empty_key_never_authenticates_even_if_its_hash_is_configured() -> None:
    api_keys = ApiKeys([ApiKeyConfig("empty", hashlib.sha256(b"").digest())])
    assert [api_keys.identify(h) for h in (None, "", "Bearer ", "Bearer  ")] == [None] * 4
    assert bearer("Bearer  abc ") == "abc"


def _problem(message: str) -> tuple[int, dict[str, str]]:
    return 400, {"status": "error", "message": message}


BAD_BODIES = [
    ({}, "campaignId is required; placement is required"),
    ({"placement": "header_banner"}, "campaignId is required"),
    ({"campaignId": None, "placement": "header_banner"}, "campaignId is required"),
    ({"campaignId": "1", "placement": "header_banner"}, "campaignId must be an integer"),
    ({"campaignId": 1.0, "placement": "header_banner"}, "campaignId must be an integer"),
    ({"campaignId": True, "placement": "header_banner"}, "campaignId must be an integer"),
    ({"campaignId": 2, "placement": "header_banner"}, "campaignId is not a known campaign"),
    ({"campaignId": 1}, "placement is required"),
    ({"campaignId": 1, "placement": 3}, "placement must be a string"),
    ({"campaignId": 1, "placement": "footer"}, "placement is not a placement of campaign 1"),
    (
        {"campaignId": 1, "placement": "header_banner", "location": "XX"},
        "location must be an ISO 3166-1 alpha-2 country code",
    ),
    (
        {"campaignId": 1, "placement": "header_banner", "location": "us"},
        "location must be an ISO 3166-1 alpha-2 country code",
    ),
    (
        {"campaignId": 1, "placement": "header_banner", "location": "USA"},
        "location must be an ISO 3166-1 alpha-2 country code",
    ),
    (
        {"campaignId": 1, "placement": "header_banner", "location": 840},
        "location must be an ISO 3166-1 alpha-2 country code",
    ),
    ({"campaignId": 1, "placement": "header_banner", "device": "tv"}, "device must be one of mobile, desktop, tablet"),
    (
        {"campaignId": "x", "placement": 1, "location": "ZZ", "device": "tv"},
        "campaignId must be an integer; placement must be a string; "
        "location must be an ISO 3166-1 alpha-2 country code; device must be one of mobile, desktop, tablet",
    ),
    ([], "body must be a JSON object"),
    ("click", "body must be a JSON object"),
]


@pytest.mark.parametrize(("body", "message"), BAD_BODIES)
async def test_every_problem_gets_a_400_message(client: EdgeClient, log: EmbeddedLog, body: Any, message: str) -> None:
    assert await post(client, body) == _problem(message)
    assert await records(log, Topic.CLICKS) == []


@pytest.mark.parametrize(
    ("extra", "location", "device"),
    [
        ({}, "", ""),
        ({"location": None, "device": None}, "", ""),
        ({"location": "GB", "device": "tablet"}, "GB", "tablet"),
    ],
)
async def test_optional_fields_are_recorded_when_given(
    client: EdgeClient, log: EmbeddedLog, extra: dict[str, Any], location: str, device: str
) -> None:
    assert await post(client, {"campaignId": 1, "placement": "article_inline", **extra}) == (
        200,
        {"status": "success", "message": "Click tracked successfully"},
    )
    (record,) = await records(log, Topic.CLICKS)
    assert (record["location"], record["device"], record["placement"]) == (location, device, "article_inline")


async def test_server_clicks_are_never_deduplicated_with_one_another(client: EdgeClient, log: EmbeddedLog) -> None:
    for _ in range(2):
        assert (await post(client, {"campaignId": 1, "placement": "header_banner", "device": "mobile"}))[0] == 200
    keys = [ClickRecord(**r).dedup_key() for r in await records(log, Topic.CLICKS)]
    assert len(set(keys)) == 2


BODY_ERRORS = [
    ({"data": b"{}" + b" " * MAX_BODY, "headers": {"Content-Type": "application/json"}}, 413),
    ({"data": b"{}", "headers": {"Content-Type": "text/plain"}}, 415),
    ({"data": b'{"campaignId": 1,', "headers": {"Content-Type": "application/json"}}, 400),
]


@pytest.mark.parametrize(("request_kwargs", "status"), BODY_ERRORS)
async def test_unreadable_bodies_get_their_status_in_the_ens_shape(
    client: EdgeClient, request_kwargs: dict[str, Any], status: int
) -> None:
    headers = {**request_kwargs.pop("headers"), **auth()}
    response = await client.post("/api/v1/campaigns/click", headers=headers, **request_kwargs)
    assert response.status == status
    answer = await response.json()
    assert list(answer) == ["status", "message"] and answer["status"] == "error" and answer["message"]


async def test_rate_limit_answers_429_per_key(client: EdgeClient, log: EmbeddedLog) -> None:
    body = {"campaignId": 1, "placement": "header_banner"}
    assert (await post(client, body, auth(SLOW_KEY)))[0] == 200
    response = await client.post("/api/v1/campaigns/click", json=body, headers=auth(SLOW_KEY))
    assert response.status == 429
    assert await response.json() == {"status": "error", "message": "rate limit exceeded"}
    assert response.headers["Retry-After"] == "1"
    assert (await post(client, body))[0] == 200  # another key has its own bucket
    assert len(await records(log, Topic.CLICKS)) == 2


def test_token_bucket_refills_at_the_configured_rate() -> None:
    limiter = RateLimiter([ApiKeyConfig("k", b"", rate_per_s=2.0)])
    assert [limiter.allow("k", now=t) for t in (100.0, 100.0, 100.0)] == [True, True, False]
    assert limiter.allow("k", now=100.4) is False
    assert limiter.allow("k", now=100.5) is True
    assert limiter.allow("k", now=1000.0) and limiter.allow("k", now=1000.0)
    assert not limiter.allow("k", now=1000.0)  # the burst is capped at one second's worth


async def test_server_click_answers_503_when_the_log_cannot_record(client: EdgeClient, log: EmbeddedLog) -> None:
    await log.stop(1.0)
    status, answer = await post(client, {"campaignId": 1, "placement": "header_banner"})
    assert (status, answer) == (503, {"status": "error", "message": "click not recorded, try again"})


def test_apikey_new_prints_a_key_its_hash_and_a_config_snippet(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["apikey", "new", "--name", "publisher-b", "--rate-per-s", "5"]) == 0
    out = capsys.readouterr().out
    key = re.search(r"^key:\s+(\S+)$", out, re.MULTILINE)
    assert key and len(key.group(1)) >= 40
    snippet = out[out.index("[api_keys.") :]
    config = from_mapping(tomllib.loads(snippet), env={})
    (configured,) = config.api_keys
    assert (configured.name, configured.rate_per_s) == ("publisher-b", 5.0)
    assert configured.sha256 == hashlib.sha256(key.group(1).encode()).digest()
    assert ApiKeys(config.api_keys).identify(f"Bearer {key.group(1)}") == configured
    assert cli.main(["apikey", "new"]) == 0
    assert key.group(1) not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"placement": "p" * (MAX_TEXT + 1)}, f"placement must be at most {MAX_TEXT} characters"),
        ({"location": "U" * (MAX_TEXT + 1)}, f"location must be at most {MAX_TEXT} characters"),
        (
            {"placement": "p" * (MAX_TEXT + 1), "device": "d" * (MAX_TEXT + 5)},
            f"placement must be at most {MAX_TEXT} characters; device must be at most {MAX_TEXT} characters",
        ),
    ],
)
async def test_text_fields_over_the_cap_get_422(
    client: EdgeClient, log: EmbeddedLog, fields: dict[str, str], message: str
) -> None:
    body = {"campaignId": CAMPAIGN, "placement": "header_banner", **fields}
    assert await post(client, body) == (422, {"status": "error", "message": message})
    assert await records(log, Topic.CLICKS) == []


@pytest.mark.parametrize(
    "refused",
    [{"placement": "p" * (MAX_TEXT + 1)}, {"campaignId": "1"}, {"campaignId": CAMPAIGN, "placement": "nowhere"}],
)
async def test_refused_requests_do_not_spend_the_rate_limit(
    client: EdgeClient, log: EmbeddedLog, refused: dict[str, Any]
) -> None:
    """The slow key allows one click a second: a refused body before it must not have used it up."""
    assert (await post(client, refused, auth(SLOW_KEY)))[0] in (400, 422)
    assert (await post(client, {"campaignId": CAMPAIGN, "placement": "header_banner"}, auth(SLOW_KEY)))[0] == 200
    assert len(await records(log, Topic.CLICKS)) == 1
