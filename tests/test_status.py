"""`clickbus status`: the view read from a running edge's /metrics."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
from aiohttp import ClientSession
from pytest_aiohttp import AiohttpServer
from rich.console import Console
from rich.table import Table

from clickbus.cli import main
from clickbus.edge import create_admin_app
from clickbus.metrics import BreakerState
from clickbus.status import parse, quantile, validity
from tests.notifier.factory import BROWSER_UA
from tests.support.bidder import BidderStub
from tests.support.configs import edge_config
from tests.support.edgeapp import app_click_path, make_app
from tests.support.ports import free_port
from tests.support.service import Service
from tests.support.waiting import eventually_async

EXPOSITION = """
# TYPE clickbus_redirect_seconds histogram
clickbus_redirect_seconds_bucket{le="0.001"} 50.0
clickbus_redirect_seconds_bucket{le="0.005"} 98.0
clickbus_redirect_seconds_bucket{le="0.01"} 100.0
clickbus_redirect_seconds_bucket{le="+Inf"} 100.0
clickbus_redirect_seconds_count 100.0
clickbus_redirect_seconds_sum 0.2
"""


def test_quantiles_come_from_histogram_buckets() -> None:
    snapshot = parse(EXPOSITION, 0.0)
    assert quantile(snapshot, "clickbus_redirect_seconds", 0.5) == 0.001
    assert quantile(snapshot, "clickbus_redirect_seconds", 0.99) == 0.01
    assert quantile(parse("", 0.0), "clickbus_redirect_seconds", 0.5) is None


async def test_once_prints_traffic_validity_and_bidders(tmp_path: Path, aiohttp_server: AiohttpServer) -> None:
    from clickbus.status import watch

    app, metrics = make_app(edge_config(tmp_path))
    server = await aiohttp_server(app)
    client_url = f"http://127.0.0.1:{server.port}"
    admin = await aiohttp_server(create_admin_app(app))
    metrics.label_members([7, 9])  # configured members: the others count as "other"
    metrics.delivery(7, "delivered")
    metrics.delivery(7, "retry")
    metrics.dead_letter(9)
    metrics.breaker(9, BreakerState.OPEN)
    metrics.consumer_lag("notifier", "clicks", 0, 12)
    metrics.click("beacon", "expired")
    for reason in (None, None, None, "duplicate"):  # the notifier's verdicts: what the validity mix shows
        metrics.verdict("click", reason)

    async def clicks() -> None:
        from aiohttp import ClientSession

        async with ClientSession() as session:
            for i in range(3):
                async with session.get(client_url + app_click_path(app, auction_id=i), allow_redirects=False) as r:
                    assert r.status == 302

    out = io.StringIO()
    console = Console(file=out, width=140, color_system=None)
    metrics_url = f"http://127.0.0.1:{admin.port}/metrics"
    watching = asyncio.create_task(asyncio.to_thread(watch, metrics_url, interval_s=0.5, once=True, console=console))
    await asyncio.sleep(0.1)
    await clicks()  # between the two scrapes: a positive click rate
    assert await watching == 0
    text = out.getvalue()
    traffic = next(line for line in text.splitlines() if "│ redirect" in line)
    assert float(traffic.split("│")[2]) > 0
    assert "valid" in text and "75.0%" in text and "duplicate" in text and "25.0%" in text
    member_7 = next(line for line in text.splitlines() if line.startswith("│ 7 "))
    assert "retry 1" in member_7 and "closed" not in member_7
    member_9 = next(line for line in text.splitlines() if line.startswith("│ 9 "))
    assert "open" in member_9
    assert "lag: notifier" in text


VERDICTS = """
# TYPE clickbus_clicks_total counter
clickbus_clicks_total{source="redirect",reason="valid"} 28.0
# TYPE clickbus_verdicts_total counter
clickbus_verdicts_total{kind="click",reason="valid"} 22.0
clickbus_verdicts_total{kind="click",reason="duplicate"} 4.0
clickbus_verdicts_total{kind="click",reason="bot"} 2.0
clickbus_verdicts_total{kind="impression",reason="valid"} 10.0
"""


def _rendered(table: Table) -> list[list[str]]:
    out = io.StringIO()
    Console(file=out, width=140, color_system=None).print(table)
    return [[cell.strip() for cell in line.split("│")[1:-1]] for line in out.getvalue().splitlines() if "│" in line]


def test_the_validity_mix_is_the_notifiers_verdicts_not_the_edges_flags() -> None:
    """28 clicks the edge recorded valid, of which the notifier judged 6 invalid: the view says 22 valid."""
    rows = _rendered(validity(parse(VERDICTS, 0.0)))
    assert rows == [
        ["valid", "22", "78.6%", "10", "100.0%"],
        ["bot", "2", "7.1%", "0", "0.0%"],
        ["duplicate", "4", "14.3%", "0", "0.0%"],
    ]


def test_without_verdicts_the_validity_mix_says_why() -> None:
    out = io.StringIO()
    Console(file=out, width=140, color_system=None).print(validity(parse(EXPOSITION, 0.0)))
    assert "no verdicts yet: is the notifier running?" in " ".join(out.getvalue().split())


def test_unreachable_service_is_an_error(capsys: object) -> None:
    url = f"http://127.0.0.1:{free_port()}/metrics"
    assert main(["status", "--once", "--interval", "0", "--url", url]) == 1


def _line(text: str, start: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(start))


@pytest.mark.slow
async def test_once_shows_bidder_health_of_a_running_service(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`clickbus run` with its notifier process delivering to a stub; status reads it all from the edge."""
    stub = BidderStub()
    await stub.start()
    members = f'[members.7]\nclick_uri = "{stub.url}"\nallow_private = true\n[notifier]\ncommit_interval_s = 0.05\n'
    service = await asyncio.to_thread(Service(tmp_path, notifier=True, extra=members).start)
    try:
        body = {"markup": "<p>ad</p>", "auction": {"member_id": 7, "auction_id_64": 31, "creative_id": 2}}
        async with ClientSession(headers={"User-Agent": BROWSER_UA}) as session:
            async with session.post(service.admin_url + "/v1/insert", json=body) as response:
                beacon = (await response.json())["beacons"]["click"]
            async with session.post(beacon, json={"user_id": "u", "session_id": "s"}) as response:
                assert response.status == 202

            async def delivered() -> bool:
                async with session.get(service.admin_url + "/metrics") as response:
                    return 'clickbus_deliveries_total{member="7",status="delivered"} 1.0' in await response.text()

            await eventually_async(delivered, timeout_s=20)
        capsys.readouterr()
        argv = ["status", "--once", "--interval", "0.2"]  # the URL comes from edge.admin_listen
        argv += ["--config", str(service.config_path)]
        assert await asyncio.to_thread(main, argv) == 0
        text = capsys.readouterr().out
    finally:
        await asyncio.to_thread(service.stop)
        await stub.stop()
    assert len(stub.received) == 1
    member = _line(text, "│ 7 ")
    assert member.split("│")[2].strip() == "ok" and member.split("│")[4].strip() == "1"
    assert "closed" in member
    assert _line(text, "│ beacon").split("│")[1].strip() == "beacon"
