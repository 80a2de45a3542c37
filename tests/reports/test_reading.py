"""Reading reports: `GET /v1/reports` on the internal listener and `clickbus report`, over a real store file."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from clickbus.config import Config
from clickbus.edge import create_admin_app, create_app
from clickbus.reports.counting import seen_key
from clickbus.reports.port import Batch, Event, Move
from clickbus.reports.schema import DIMENSIONS, bucket
from clickbus.reports.sqlite import SQLiteStore
from clickbus.tokens import Keyring, new_key
from tests.support.configs import build_config

NOW = time.time()
HOUR = int(NOW) // 3600 * 3600
Client = TestClient[Any, Any]


def key(hour: int, creative: int, reason: str = "", kind_member: int = 13) -> tuple[int | str, ...]:
    dims: dict[str, int | str] = dict.fromkeys(DIMENSIONS, 0)
    dims |= {"member": kind_member, "creative": creative, "placement": "top", "country": "FR", "device": "mobile"}
    dims |= {"source": "redirect"}
    return (hour, *(dims[name] for name in DIMENSIONS), reason)


async def fill(config: Config) -> None:
    """Creative 5: 10 impressions, 2 clicks, 1 duplicate click, 2 callbacks (12 and 40 ms); creative 6: 1 bot click."""
    store = SQLiteStore(config.reports_path)
    await store.start()
    n = iter(range(1000))
    events = [Event(seen_key(f"i{next(n)}", 0, 1), key(HOUR, 5), (1, 0, 0, 0, 0)) for _ in range(10)]
    events += [Event(seen_key(f"c{next(n)}", 0, 1), key(HOUR, 5), (0, 1, 0, 0, 0)) for _ in range(2)]
    events.append(Event(seen_key("d", 0, 2), key(HOUR, 5, "duplicate"), (0, 1, 0, 0, 0)))
    events.append(Event(seen_key("e", 1, 3), key(HOUR, 5), (0, 0, 1, 0, 0), bucket(12)))
    events.append(Event(seen_key("f", 1, 3), key(HOUR, 5), (0, 0, 1, 0, 0), bucket(40)))
    events.append(Event(seen_key("g", 0, 2), key(HOUR - 86400 * 3, 6, "bot"), (0, 1, 0, 0, 0)))
    await store.apply(Batch("g", [Move("deliveries", 0, None, 1)], events))
    await store.stop()


@pytest.fixture
async def admin(tmp_path: Path) -> AsyncIterator[Client]:
    config = build_config(tmp_path / "var")
    await fill(config)
    edge = create_app(config, keyring=Keyring({"k1": new_key()}, "k1"))
    async with TestClient(TestServer(create_admin_app(edge))) as client:
        yield client


async def test_json_report_has_the_agreed_shape(admin: Client) -> None:
    response = await admin.get("/v1/reports", params={"by": "creative,hour", "since": "7d"})
    assert response.status == 200 and response.content_type == "application/json"
    report = orjson.loads(await response.read())
    assert list(report) == ["since", "until", "by", "kept_since", "clipped", "rows", "totals"]
    assert report["by"] == ["creative", "hour"] and report["clipped"] is False
    first, second = report["rows"]
    assert first["hour"] == time.strftime("%Y-%m-%dT%H:00:00Z", time.gmtime(HOUR - 86400 * 3))
    assert (first["creative"], first["clicks"], first["invalid"]) == (6, 0, {"bot": 1})
    assert second == {
        "hour": time.strftime("%Y-%m-%dT%H:00:00Z", time.gmtime(HOUR)),
        "creative": 5,
        "impressions": 10,
        "clicks": 2,
        "ctr": 0.2,
        "invalid_impressions": 0,
        "invalid_clicks": 1,
        "invalid": {"duplicate": 1},
        "ivt_rate": {"duplicate": round(1 / 13, 6)},
        "delivered": 2,
        "retried": 0,
        "dead_lettered": 0,
        "callback_p50_ms": 12.1,
        "callback_p99_ms": 38.3,
    }
    assert report["totals"]["clicks"] == 2 and report["totals"]["invalid"] == {"bot": 1, "duplicate": 1}
    assert "creative" not in report["totals"]


async def test_csv_by_accept_header_with_filters(admin: Client) -> None:
    response = await admin.get(
        "/v1/reports", params={"by": "day", "since": "7d", "creative": "5"}, headers={"Accept": "text/csv"}
    )
    assert response.status == 200 and response.content_type == "text/csv"
    (row,) = list(csv.DictReader(io.StringIO(await response.text())))
    assert row["day"] == time.strftime("%Y-%m-%d", time.gmtime(HOUR))
    assert (row["clicks"], row["invalid_duplicate"], row["invalid_bot"], row["ctr"]) == ("2", "1", "0", "0.2")


async def test_a_range_past_retention_says_what_is_kept(admin: Client) -> None:
    report = orjson.loads(await (await admin.get("/v1/reports", params={"since": "2000-01-01"})).read())
    assert report["clipped"] is True and report["kept_since"] > "2000-01-01"
    assert report["totals"]["clicks"] == 2


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"by": "colour"}, "unknown dimension: colour"),
        ({"colour": "red"}, "unknown filter: colour"),
        ({"format": "xml"}, "unknown format: xml"),
        ({"member": "x"}, "member: expected an integer"),
        ({"since": "yesterday"}, "since: expected a date"),
        ({"by": "hour,day"}, "by: at most one of hour, day, month"),
    ],
)
async def test_bad_parameters_are_400_naming_them(
    admin: Client,
    params: dict[str, str],
    message: str,
) -> None:
    response = await admin.get("/v1/reports", params=params)
    assert response.status == 400
    assert orjson.loads(await response.read())["error"].startswith(message)


def test_cli_reports_and_exits_2_with_the_same_message(tmp_path: Path) -> None:
    config = build_config(tmp_path / "var")
    import asyncio

    asyncio.run(fill(config))
    conf = tmp_path / "c.toml"
    conf.write_text(f'data_dir = "{tmp_path / "var"}"\n')
    cli = [sys.executable, "-m", "clickbus", "report", "--config", str(conf)]
    piped = subprocess.run([*cli, "--by", "creative", "--since", "7d"], capture_output=True, text=True, check=True)
    rows = list(csv.DictReader(io.StringIO(piped.stdout)))  # piped: CSV
    assert [(r["creative"], r["clicks"], r["invalid_bot"]) for r in rows] == [("5", "2", "0"), ("6", "0", "1")]
    table = subprocess.run([*cli, "--by", "creative", "--format", "table"], capture_output=True, text=True, check=True)
    assert "20.00%" in table.stdout and "total" in table.stdout
    bad = subprocess.run([*cli, "--by", "colour"], capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and "unknown dimension: colour" in bad.stderr


@pytest.mark.parametrize("damage", ["not a database", "a directory"])
async def test_a_damaged_report_file_is_a_503_naming_it_never_a_500(tmp_path: Path, damage: str) -> None:
    config = build_config(tmp_path / "var")
    config.reports_path.parent.mkdir(parents=True, exist_ok=True)
    if damage == "a directory":
        config.reports_path.mkdir()
    else:
        config.reports_path.write_bytes(b"these bytes are no SQLite database" * 100)
    edge = create_app(config, keyring=Keyring({"k1": new_key()}, "k1"))
    async with TestClient(TestServer(create_admin_app(edge))) as client:
        response = await client.get("/v1/reports", params={"since": "7d"})
        assert response.status == 503  # before: 500
        assert "report store" in orjson.loads(await response.read())["error"]
