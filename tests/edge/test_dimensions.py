"""Reporting dimensions: given at insertion, signed into the token, recorded on the click and the impression."""

from __future__ import annotations

from typing import Any

import pytest

from clickbus.log import EmbeddedLog
from clickbus.log.port import Topic
from tests.support.edgeapp import EdgeClient
from tests.support.records import records

DIMENSIONS = {"campaign_id": 42, "placement": "header_banner", "publisher_id": 7, "country": "FR"}
BODY: dict[str, Any] = {
    "markup": '<img src="${IMPRESSION_URL}">',
    "landing_url": "https://shop.example/",
    "auction": {"member_id": 13, "auction_id_64": 1, "creative_id": 5, **DIMENSIONS},
}


async def test_dimensions_travel_from_insertion_to_the_records(
    client: EdgeClient, admin: EdgeClient, log: EmbeddedLog
) -> None:
    inserted = await (await admin.post("/v1/insert", json=BODY)).json()
    for url in (inserted["click_url"], inserted["impression_url"]):
        response = await client.get(url.removeprefix("http://edge.test"), allow_redirects=False)
        assert response.status in (200, 302)
    (click,) = await records(log, Topic.CLICKS)
    (impression,) = await records(log, Topic.IMPRESSIONS)
    for record in (click, impression):
        assert {name: record[name] for name in DIMENSIONS} == DIMENSIONS


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("placement", "p" * 65, "expected a string of at most 64 characters"),
        ("placement", 3, "expected a string of at most 64 characters"),
        ("country", "UK", "expected an ISO 3166-1 alpha-2 country code (US, GB, FR)"),
        ("country", "fr", "expected an ISO 3166-1 alpha-2 country code (US, GB, FR)"),
        ("campaign_id", 2**32, "expected an integer from 0 to 4294967295"),
        ("publisher_id", "7", "expected an integer from 0 to 4294967295"),
    ],
)
async def test_bad_dimensions_are_422_naming_them(admin: EdgeClient, field: str, value: object, message: str) -> None:
    body = {**BODY, "auction": {**BODY["auction"], field: value}}
    response = await admin.post("/v1/insert", json=body)
    assert response.status == 422
    assert (await response.json())["errors"] == [{"field": f"auction.{field}", "message": message}]
