"""Adversarial markup and oversized fields against a real `clickbus run`.

Markup: every shape that made the old anchor regex quadratic, up to the body cap, inserted while
`/healthz` is asked at the same time: neither may hang (the old regex took tens of seconds at
64 KiB, and the health check waited behind it). Oversized fields: each answers its documented
status (`422` naming the field, `413` past the body cap), or is truncated when it is a header.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from clickbus.edge import create_app
from clickbus.edge.appkeys import INSERT_THREAD
from clickbus.metrics import create_metrics
from tests.hostile.harness import API_KEY, CAMPAIGN, Tally, click_path, exchange, fetch, insert_url, session
from tests.support.configs import edge_config
from tests.support.edgeapp import admin_client
from tests.support.service import Service

KIB = 1024
MARKUPS = {
    "open anchors": "<a " * (20 * KIB),
    "unclosed quotes": '<a href="' * (6 * KIB),
    "bare attributes": "<a x y=z " * (6 * KIB),
    "spaces without =": "<a href" + " " * (60 * KIB),
    "many links": "".join(f"<a href='https://shop.example/{i}'>" for i in range(1700)),
    "click macros": "${CLICK_URL}" * (5 * KIB),
    "nested quotes": "<a title='\"' " * (4 * KIB),
}


async def test_adversarial_markup_neither_hangs_nor_starves_health(service: Service) -> None:
    tally = Tally("adversarial markup")
    async with session() as client:
        for shape, markup in MARKUPS.items():
            body = {**_insert(), "markup": markup, "wrap_links": True}
            insert = asyncio.create_task(fetch(client, "POST", insert_url(service), json=body))
            await asyncio.sleep(0.01)
            health = await fetch(client, "GET", f"{service.url}/healthz")
            tally.count(health, f"/healthz during {shape}", expected=(200,))
            tally.count(await insert, f"insert {shape} ({len(markup)} chars)", expected=(200, 422))
    tally.report()


def _insert(**auction: Any) -> dict[str, Any]:
    return {"markup": "${CLICK_URL}", "landing_url": "https://shop.example/", "auction": {"member_id": 13, **auction}}


INSERTS: dict[str, tuple[dict[str, Any], tuple[int, ...]]] = {
    "userdata_json 60,000": (_insert(userdata_json="u" * 60_000), (422,)),
    "custom_notify_data 5,000": (_insert(custom_notify_data="c" * 5_000), (422,)),
    "both 2,000": (_insert(userdata_json="u" * 2_000, custom_notify_data="c" * 2_000), (422,)),
    "redirect_hosts 17": (_insert(redirect_hosts=[f"h{i}.example" for i in range(17)]), (422,)),
    "landing_url 3,000": ({**_insert(), "landing_url": "https://shop.example/" + "p" * 3_000}, (422,)),
    "markup 70,000": ({**_insert(), "markup": "m" * 70_000}, (413,)),
    "auction_id 2**64": (_insert(auction_id_64=2**64), (422,)),
}


async def test_oversized_fields_get_their_documented_status(service: Service) -> None:
    tally = Tally("oversized fields")
    path = click_path(service)
    token = path.removeprefix("/ck/")
    long = "x" * 60_000
    async with session() as client:
        for name, (body, expected) in INSERTS.items():
            tally.count(await fetch(client, "POST", insert_url(service), json=body), f"insert {name}", expected)
        beacons = [{"user_id": "u" * 1_025}, {"session_id": long}, {"user_id": "u", "session_id": "s" * 2_000}]
        for kind in ("click", "impression"):
            for beacon in beacons:
                answer = await fetch(client, "POST", f"{service.url}/v1/beacon/{kind}/{token}", json=beacon)
                tally.count(answer, f"beacon {kind} {list(beacon)}", expected=(422,))
        auth = {"Authorization": f"Bearer {API_KEY}"}
        for field, value in (("placement", "p" * 1_025), ("placement", long), ("location", "U" * 2_000)):
            body = {"campaignId": CAMPAIGN, "placement": "header_banner", field: value}
            answer = await fetch(client, "POST", f"{service.url}/api/v1/campaigns/click", json=body, headers=auth)
            tally.count(answer, f"server click {field} {len(value)}", expected=(422,))
            assert orjson.loads(answer.body)["message"].startswith(field)
        for header in ("User-Agent", "Referer", "Accept-Language"):
            answer = await fetch(client, "GET", service.url + path, headers={header: "h" * 8_000})
            tally.count(answer, f"click with a {header} of 8,000", expected=(302,))
        appended = "https%3A%2F%2Fshop.example%2F" + "p" * 7_000
        tally.count(await fetch(client, "GET", f"{service.url}{path}?r={appended}"), "?r= of 7,000", expected=(302,))
    for raw, what in (
        (b"GET /ck/" + b"A" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", "path of 100,000"),
        (b"GET " + path.encode() + b" HTTP/1.1\r\n" + b"X-A: b\r\n" * 500 + b"\r\n", "500 headers"),
        (b"GET " + path.encode() + b" HTTP/1.1\r\nUser-Agent: " + b"u" * 20_000 + b"\r\n\r\n", "header of 20,000"),
    ):
        tally.count(await exchange(service.port, raw), what, expected=(302, 400, 414, 431))
    tally.report()


async def test_a_click_answers_after_the_assault(service: Service) -> None:
    async with aiohttp.ClientSession() as client:
        assert (await fetch(client, "GET", service.url + click_path(service))).status == 302


def _insertion_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("clickbus-insert")]


async def test_the_large_markup_thread_starts_and_stops_with_its_application(tmp_path: Path) -> None:
    """Before: one module-level pool, made on first use and never stopped (it outlived every app)."""
    edge = create_app(edge_config(tmp_path), metrics=create_metrics())
    markup = "<a href='https://shop.example/'>x</a>" * 1_000  # over INLINE_MARKUP_CHARS: inserted on the thread
    body = {**_insert(), "markup": markup, "wrap_links": True}
    async with TestClient(TestServer(edge)), admin_client(edge) as admin:
        pool = admin.app[INSERT_THREAD]
        assert (await admin.post("/v1/insert", json=body)).status == 200
        assert len(_insertion_threads()) == 1
    assert _insertion_threads() == []
    with pytest.raises(RuntimeError):
        pool.submit(print)
