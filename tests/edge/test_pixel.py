"""The impression pixel over the real app, recording into a real SQLite log."""

from __future__ import annotations

import struct

import pytest

from clickbus.log import EmbeddedLog, Topic
from clickbus.records import ImpressionRecord
from tests.edge.publisher_support import MEMBER, insertion, path_of, publisher_config
from tests.support.edgeapp import EdgeClient
from tests.support.records import records

__all__ = ["publisher_config"]  # the `config` fixture


async def test_pixel_answers_an_uncached_1x1_gif_and_records_an_impression(
    client: EdgeClient, log: EmbeddedLog
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


async def test_head_answers_the_gif_without_recording(client: EdgeClient, log: EmbeddedLog) -> None:
    url = (await insertion(client))["impression_url"]
    response = await client.head(path_of(url))
    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert await records(log, Topic.IMPRESSIONS) == []


@pytest.mark.parametrize("token", ["not-a-token", "AAAA", "4a94bc6e-7db1-425f-8430-cb4d17488b3b", "x" * 5000])
async def test_invalid_token_gets_400_without_recording(client: EdgeClient, log: EmbeddedLog, token: str) -> None:
    response = await client.get(f"/i/{token}")
    assert response.status == 400
    assert response.headers["Cache-Control"] == "no-store"
    assert await records(log, Topic.IMPRESSIONS) == []


async def test_pixel_answers_503_when_the_log_cannot_record(client: EdgeClient, log: EmbeddedLog) -> None:
    url = (await insertion(client))["impression_url"]
    await log.stop(1.0)
    response = await client.get(path_of(url))
    assert response.status == 503
    assert response.headers["Retry-After"] == "1"


async def test_beacon_answers_503_in_the_error_array_shape_when_the_log_cannot_record(
    client: EdgeClient, log: EmbeddedLog
) -> None:
    url = (await insertion(client))["beacons"]["click"]
    await log.stop(1.0)
    response = await client.post(path_of(url), json={"user_id": "u"})
    assert response.status == 503
    (error,) = await response.json()
    assert error["message"] == "event not recorded, try again"
