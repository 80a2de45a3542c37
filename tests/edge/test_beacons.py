"""VTEX-style beacons over the real app: the reference documents' own examples, every error path, the log."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from pytest_aiohttp import AiohttpClient

from clickbus.edge import create_app
from clickbus.edge.appkeys import KEYRING
from clickbus.log import EmbeddedLog, Topic
from clickbus.records import ClickRecord, ImpressionRecord
from clickbus.tokens import AdContext
from tests.edge.publisher_support import (
    LANDING,
    MAX_BODY,
    MAX_TEXT,
    MEMBER,
    REFERENCE,
    insertion,
    js_literal_to_json,
    make_config,
    path_of,
    publisher_config,
)
from tests.support.edgeapp import EdgeClient
from tests.support.records import records

__all__ = ["publisher_config"]  # the `config` fixture

ERROR_KEYS = ["instancePath", "keyword", "message", "params", "schemaPath"]


@dataclass(frozen=True)
class Example:
    """A reference document's request example and its documented answers."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    success: Any
    failure: Any


def load_example(name: str) -> Example:
    text = (REFERENCE / name).read_text(encoding="utf-8")
    request, success, failure = re.findall(r"```json\n(.*?)```", text, re.DOTALL)
    head, _, body = request.partition("\n\n")
    request_line, *header_lines = head.splitlines()
    method, url, _ = request_line.split(" ")
    headers = dict(line.split(": ", 1) for line in header_lines)
    parts = urlsplit(url)
    return Example(
        method,
        parts.path,
        parts.query,
        headers,
        body.strip().encode(),
        orjson.loads(success),
        js_literal_to_json(failure),
    )


EXAMPLES = {"click": load_example("vtex-clicks.md"), "impression": load_example("vtex-impressions.md")}
TOPICS = {"click": Topic.CLICKS, "impression": Topic.IMPRESSIONS}


def beacon_path(example: Example, token: str) -> str:
    """The reference's path with its ad id (a UUID, which clickbus does not issue) replaced by a real token."""
    prefix, _, ad_id = example.path.rpartition("/")
    assert re.fullmatch(r"[0-9a-f-]{36}", ad_id)
    return f"{prefix}/{token}"


async def test_reference_documents_agree_with_each_other() -> None:
    assert EXAMPLES["click"].failure == EXAMPLES["impression"].failure
    assert EXAMPLES["click"].body == EXAMPLES["impression"].body
    assert [list(e) for e in EXAMPLES["click"].failure] == [ERROR_KEYS] * 3


async def test_insert_answers_beacon_urls_built_from_its_token(client: EdgeClient) -> None:
    done = await insertion(client)
    token = done["impression_url"].rsplit("/", 1)[1]
    assert done["beacons"] == {
        "click": f"http://clickbus.test/v1/beacon/click/{token}",
        "impression": f"http://clickbus.test/v1/beacon/impression/{token}",
    }


@pytest.mark.parametrize("kind", ["click", "impression"])
async def test_reference_request_example_gets_the_reference_success(
    client: EdgeClient, log: EmbeddedLog, kind: str
) -> None:
    example = EXAMPLES[kind]
    url = (await insertion(client))["beacons"][kind]
    assert beacon_path(example, "T").startswith(urlsplit(url).path.rsplit("/", 1)[0])
    response = await client.request(
        example.method, f"{path_of(url)}?{example.query}", data=example.body, headers=example.headers
    )
    assert response.status == 202
    assert response.content_type == "application/json"
    assert await response.json() == example.success
    sent = orjson.loads(example.body)
    (record,) = await records(log, TOPICS[kind])
    assert record["source"] == "beacon"
    assert (record["user_id"], record["session_id"]) == (sent["user_id"], sent["session_id"])
    assert record["pos"] == 1  # the example's ?pos=1 wins over the token's pos 2
    assert (record["member_id"], record["creative_id"], record["auction_id_64"]) == (MEMBER, 77, 123456789)
    assert record["valid"] is True


@pytest.mark.parametrize("kind", ["click", "impression"])
async def test_reference_failure_example_is_answered_exactly(client: EdgeClient, log: EmbeddedLog, kind: str) -> None:
    example = EXAMPLES[kind]
    url = (await insertion(client))["beacons"][kind]
    response = await client.post(path_of(url), data=b"{}", headers=example.headers)
    assert response.status == 422
    answer = orjson.loads(await response.read())
    assert answer == example.failure
    assert [list(error) for error in answer] == [ERROR_KEYS] * 3
    assert await records(log, TOPICS[kind]) == []


async def test_beacon_click_record_has_every_field(client: EdgeClient, log: EmbeddedLog) -> None:
    url = (await insertion(client, test=True))["beacons"]["click"]
    headers = {"User-Agent": "Mozilla/5.0 test", "Referer": "https://publisher.example/page"}
    response = await client.post(path_of(url), json={"session_id": "s-1"}, headers=headers)
    assert response.status == 202
    (raw,) = await records(log, Topic.CLICKS)
    record = ClickRecord(**raw)
    assert record.source == "beacon" and record.landing_url == LANDING and record.test is True
    assert (record.user_id, record.session_id, record.pos) == ("", "s-1", 2)
    assert record.user_agent == "Mozilla/5.0 test" and record.referer_url == "https://publisher.example/page"
    assert record.client_ip == "127.0.0.0"


@pytest.mark.parametrize("kind", ["click", "impression"])
async def test_repeated_beacons_share_a_dedup_key_per_user_device_and_ad(
    client: EdgeClient, log: EmbeddedLog, kind: str
) -> None:
    first = (await insertion(client))["beacons"][kind]
    other_ad = (await insertion(client, creative_id=78))["beacons"][kind]
    sends = [(first, "u1", "A"), (first, "u1", "A"), (first, "u2", "A"), (first, "u1", "B"), (other_ad, "u1", "A")]
    for url, user, agent in sends:
        response = await client.post(path_of(url), json={"user_id": user}, headers={"User-Agent": agent})
        assert response.status == 202
    record_type = ClickRecord if kind == "click" else ImpressionRecord
    keys = [record_type(**r).dedup_key() for r in await records(log, TOPICS[kind])]
    assert keys[0] == keys[1]
    assert len(set(keys)) == 4


def _type_error(name: str) -> dict[str, Any]:
    return {
        "instancePath": f"/{name}",
        "keyword": "type",
        "message": "must be string",
        "params": {"type": "string"},
        "schemaPath": f"#/properties/{name}/type",
    }


BAD_BODIES = [
    ({"user_id": 5}, [_type_error("user_id")]),
    ({"user_id": "u", "session_id": None}, [_type_error("session_id")]),
    ({"user_id": [], "session_id": {}}, [_type_error("user_id"), _type_error("session_id")]),
    (
        [],
        [
            {
                "instancePath": "",
                "keyword": "type",
                "message": "must be object",
                "params": {"type": "object"},
                "schemaPath": "#/type",
            }
        ],
    ),
]


def _max_length_error(name: str) -> dict[str, Any]:
    return {
        "instancePath": f"/{name}",
        "keyword": "maxLength",
        "message": f"must NOT have more than {MAX_TEXT} characters",
        "params": {"limit": MAX_TEXT},
        "schemaPath": f"#/properties/{name}/maxLength",
    }


BAD_BODIES += [
    ({"user_id": "u" * (MAX_TEXT + 1)}, [_max_length_error("user_id")]),
    (
        {"user_id": "é" * (MAX_TEXT + 1), "session_id": "s" * 100},
        [_max_length_error(n) for n in ("user_id", "session_id")],
    ),
    ({"user_id": 1, "session_id": "s" * (MAX_TEXT + 1)}, [_type_error("user_id"), _max_length_error("session_id")]),
]


@pytest.mark.parametrize("kind", ["click", "impression"])
async def test_ids_of_the_longest_allowed_length_are_recorded(client: EdgeClient, log: EmbeddedLog, kind: str) -> None:
    url = (await insertion(client))["beacons"][kind]
    body = {"user_id": "u" * MAX_TEXT, "session_id": "é" * MAX_TEXT}
    response = await client.post(path_of(url), json=body)
    assert response.status == 202
    (record,) = await records(log, Topic.CLICKS if kind == "click" else Topic.IMPRESSIONS)
    assert (record["user_id"], record["session_id"]) == (body["user_id"], body["session_id"])


@pytest.mark.parametrize(("body", "errors"), BAD_BODIES)
async def test_invalid_bodies_get_422_with_ajv_errors(
    client: EdgeClient, log: EmbeddedLog, body: Any, errors: list[dict[str, Any]]
) -> None:
    url = (await insertion(client))["beacons"]["click"]
    response = await client.post(path_of(url), json=body)
    assert response.status == 422
    assert await response.json() == errors
    assert await records(log, Topic.CLICKS) == []


@pytest.mark.parametrize(
    ("pos", "keyword"),
    [
        ("x", "type"),
        ("1.5", "type"),
        ("-1", "minimum"),
        ("65536", "maximum"),
        ("9" * 5000, "maximum"),
        ("01", "type"),  # zero-padded: one position, read alike by every reader of the URL
        ("00", "type"),
        ("-0", "type"),
        (["1", "2"], "type"),  # repeated: an array, not an integer
        (["1", "1"], "type"),
    ],
)
async def test_invalid_pos_gets_422(client: EdgeClient, log: EmbeddedLog, pos: str | list[str], keyword: str) -> None:
    url = (await insertion(client))["beacons"]["impression"]
    params = [("pos", p) for p in ([pos] if isinstance(pos, str) else pos)]
    response = await client.post(path_of(url), params=params, json={"user_id": "u"})
    assert response.status == 422
    (error,) = await response.json()
    assert (error["instancePath"], error["keyword"]) == ("/pos", keyword)
    assert await records(log, Topic.IMPRESSIONS) == []


def _tampered(token: str) -> str:
    return token[:-2] + ("AA" if token[-2:] != "AA" else "BB")


@pytest.mark.parametrize("kind", ["click", "impression"])
@pytest.mark.parametrize("mangle", [_tampered, lambda t: "4a94bc6e-7db1-425f-8430-cb4d17488b3b", lambda t: t + "="])
async def test_tokens_that_fail_verification_get_400_and_nothing_is_recorded(
    client: EdgeClient, log: EmbeddedLog, kind: str, mangle: Any
) -> None:
    token = (await insertion(client))["beacons"][kind].rsplit("/", 1)[1]
    response = await client.post(f"/v1/beacon/{kind}/{mangle(token)}", json={"user_id": "u"})
    assert response.status == 400
    (error,) = await response.json()
    assert error == {
        "instancePath": "/ad_id",
        "keyword": "token",
        "message": "must be an ad_id issued by this server",
        "params": {},
        "schemaPath": "#/params/ad_id",
    }
    assert await records(log, TOPICS[kind]) == []


BODY_ERRORS = [
    ({"data": b"x" * (MAX_BODY + 1), "headers": {"Content-Type": "application/json"}}, 413),
    ({"data": b'{"user_id": "u"}', "headers": {"Content-Type": "text/plain"}}, 415),
    ({"data": b'{"user_id": "u"}'}, 415),
    ({"data": b'{"user_id": ', "headers": {"Content-Type": "application/json"}}, 400),
    ({"data": b"", "headers": {"Content-Type": "application/json"}}, 400),
]


@pytest.mark.parametrize(("request_kwargs", "status"), BODY_ERRORS)
async def test_unreadable_bodies_get_their_status_in_the_error_array_shape(
    client: EdgeClient, log: EmbeddedLog, request_kwargs: dict[str, Any], status: int
) -> None:
    url = (await insertion(client))["beacons"]["click"]
    response = await client.post(path_of(url), **request_kwargs)
    assert response.status == status
    (error,) = await response.json()
    assert list(error) == ERROR_KEYS and error["keyword"] == "body" and error["message"]
    assert await records(log, Topic.CLICKS) == []


async def test_chunked_body_over_the_cap_gets_413(client: EdgeClient) -> None:
    url = (await insertion(client))["beacons"]["click"]

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b" " * MAX_BODY

    response = await client.post(path_of(url), data=chunks(), headers={"Content-Type": "application/json"})
    assert response.status == 413


async def test_expired_token_is_accepted_and_recorded_invalid(tmp_path: Path, aiohttp_client: AiohttpClient) -> None:
    log = EmbeddedLog(tmp_path / "log")
    app = create_app(make_config(tmp_path), log=log)
    client: EdgeClient = await aiohttp_client(app)
    token = app[KEYRING].sign(AdContext(member_id=MEMBER, creative_id=5), ttl_s=1, now=1_000_000)
    response = await client.post(f"/v1/beacon/click/{token}", json={"user_id": "u"})
    assert response.status == 202
    (record,) = await records(log, Topic.CLICKS)
    assert (record["valid"], record["reason"]) == (False, "expired")


async def test_beacons_answer_cors_preflight_and_allow_any_origin(client: EdgeClient) -> None:
    url = (await insertion(client))["beacons"]["click"]
    preflight = await client.options(path_of(url), headers={"Origin": "https://publisher.example"})
    assert preflight.status == 204
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert "content-type" in preflight.headers["Access-Control-Allow-Headers"]
    response = await client.post(path_of(url), json={"user_id": "u"})
    assert response.headers["Access-Control-Allow-Origin"] == "*"
