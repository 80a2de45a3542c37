"""The impression pixel over the real app, recording into a real SQLite log."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from clickbus.edge import create_app
from clickbus.log import EmbeddedLog, Topic
from clickbus.records import ImpressionRecord
from tests.edge.publisher_support import MEMBER, insertion, make_config, path_of, records


@pytest.fixture
def log(tmp_path: Path) -> EmbeddedLog:
    return EmbeddedLog(tmp_path / "log")


@pytest.fixture
async def client(tmp_path: Path, log: EmbeddedLog, aiohttp_client: Any) -> TestClient:
    client: TestClient = await aiohttp_client(create_app(make_config(tmp_path), log=log))
    return client


async def test_pixel_answers_an_uncached_1x1_gif_and_records_an_impression(
    client: TestClient, log: EmbeddedLog
) -> None:
    url = (await insertion(client))["impression_url"]
    response = await client.get(path_of(url), headers={"User-Agent": "UA", "Referer": "https://pub.example/"})
    assert response.status == 200
    assert response.content_type == "image/gif"
    assert response.headers["Cache-Control"] == "no-store"
    gif = await response.read()
    assert gif[:6] == b"GIF89a" and struct.unpack("<HH", gif[6:10]) == (1, 1) and gif.endswith(b";")
    (raw,) = await records(log, Topic.IMPRESSIONS)
    record = ImpressionRecord(**raw)
    assert (record.source, record.member_id, record.creative_id, record.pos) == ("pixel", MEMBER, 77, 2)
    assert (record.user_agent, record.referer_url, record.valid) == ("UA", "https://pub.example/", True)
    assert await records(log, Topic.CLICKS) == []


async def test_head_answers_the_gif_without_recording(client: TestClient, log: EmbeddedLog) -> None:
    url = (await insertion(client))["impression_url"]
    response = await client.head(path_of(url))
    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert await records(log, Topic.IMPRESSIONS) == []


@pytest.mark.parametrize("token", ["not-a-token", "AAAA", "4a94bc6e-7db1-425f-8430-cb4d17488b3b", "x" * 5000])
async def test_invalid_token_gets_400_without_recording(client: TestClient, log: EmbeddedLog, token: str) -> None:
    response = await client.get(f"/i/{token}")
    assert response.status == 400
    assert response.headers["Cache-Control"] == "no-store"
    assert await records(log, Topic.IMPRESSIONS) == []


async def test_pixel_answers_503_when_the_log_cannot_record(client: TestClient, log: EmbeddedLog) -> None:
    url = (await insertion(client))["impression_url"]
    await log.stop(1.0)
    response = await client.get(path_of(url))
    assert response.status == 503
    assert response.headers["Retry-After"] == "1"


async def test_beacon_answers_503_in_the_error_array_shape_when_the_log_cannot_record(
    client: TestClient, log: EmbeddedLog
) -> None:
    url = (await insertion(client))["beacons"]["click"]
    await log.stop(1.0)
    response = await client.post(path_of(url), json={"user_id": "u"})
    assert response.status == 503
    (error,) = await response.json()
    assert error["message"] == "event not recorded, try again"
