"""Structured logs: JSON lines with context, no secrets, no full addresses; the access log is opt-in."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from aiohttp import ClientSession

from clickbus.config import HostPort
from clickbus.edge.connections import bound, listen
from clickbus.edge.serve import make_runner
from clickbus.log import open_log
from clickbus.logging_setup import JsonFormatter, configure, scrub
from tests.support.configs import edge_config, kafka_config
from tests.support.edgeapp import make_app
from tests.support.ports import free_port


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    configure("info", stream=stream)
    yield stream
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def records(stream: io.StringIO) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("from 203.0.113.77 now", "from 203.0.113.0 now"),
        ("v6 2001:db8:1234:5678::1 here", "v6 2001:db8:1234:: here"),
        ("mapped ::ffff:198.51.100.9", "mapped 198.51.100.0"),
        ("at 09:22:17 on 2026-11-23", "at 09:22:17 on 2026-11-23"),
        ("version 1.2.3.4.5 stays", "version 1.2.3.4.5 stays"),
        ("no address", "no address"),
    ],
)
def test_scrub_cuts_addresses_only(text: str, expected: str) -> None:
    assert scrub(text) == expected


def test_a_line_is_one_json_object_with_context(lines: io.StringIO) -> None:
    log = logging.getLogger("clickbus.edge.test")  # the edge serves clients: addresses in its lines are theirs
    log.debug("not shown at info")
    log.warning("click from %s", "192.0.2.55", extra={"click_id": "0190-abc", "member_id": 7, "api_key": "s3cr3t"})
    (record,) = records(lines)
    assert record["level"] == "warning"
    assert record["logger"] == "clickbus.edge.test"
    assert record["msg"] == "click from 192.0.2.0"
    assert record["click_id"] == "0190-abc"
    assert record["member_id"] == 7
    assert record["api_key"] == "***"
    assert "s3cr3t" not in lines.getvalue() and "192.0.2.55" not in lines.getvalue()


def test_exceptions_are_one_line_too(lines: io.StringIO) -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("clickbus.test").exception("failed")
    (record,) = records(lines)
    assert record["level"] == "error" and "ValueError: boom" in str(record["exc"])


def test_worker_field_when_set() -> None:
    line = JsonFormatter(worker="3").format(logging.makeLogRecord({"msg": "hi", "levelname": "INFO"}))
    assert orjson.loads(line)["worker"] == "3"


@pytest.mark.parametrize("access_log", [False, True])
async def test_access_log_only_when_configured(tmp_path: Path, lines: io.StringIO, access_log: bool) -> None:
    config = edge_config(tmp_path, access_log=access_log)
    app, _ = make_app(config)
    runner = make_runner(app, config)
    await runner.setup()
    server = await listen(runner, HostPort("127.0.0.1", 0), config.edge)
    try:
        async with ClientSession() as session, session.get(f"http://{bound(server)}/healthz?x=1") as response:
            assert response.status == 200
    finally:
        server.close()
        await runner.cleanup()
    access = [r for r in records(lines) if r["logger"] == "clickbus.access"]
    if not access_log:
        assert access == []
        return
    (line,) = access
    assert (line["method"], line["path"], line["status"], line["client"]) == ("GET", "/healthz", 200, "127.0.0.0")


@pytest.mark.parametrize(
    ("logger", "masked"),
    [
        ("clickbus.edge.connections", True),
        ("clickbus.access", True),
        ("aiohttp.server", True),
        ("aiohttp.web", True),
        ("clickbus.log.kafka", False),
        ("aiokafka", False),
        ("clickbus.notifier.bidders", False),
        ("clickbus.edgeways", False),  # a child of the edge's logger is named "clickbus.edge.<...>"
    ],
)
def test_only_the_lines_of_loggers_that_serve_clients_are_masked(lines: io.StringIO, logger: str, masked: bool) -> None:
    logging.getLogger(logger).warning("peer 203.0.113.77 at ('127.0.0.1', 9092)", extra={"host": "198.51.100.9"})
    (record,) = records(lines)
    if masked:
        assert (record["msg"], record["host"]) == ("peer 203.0.113.0 at ('127.0.0.0', 9092)", "198.51.100.0")
    else:
        assert (record["msg"], record["host"]) == ("peer 203.0.113.77 at ('127.0.0.1', 9092)", "198.51.100.9")


@pytest.mark.parametrize("field", ["client", "client_ip", "remote", "peer"])
def test_a_field_named_for_a_client_is_masked_in_any_logger(lines: io.StringIO, field: str) -> None:
    logging.getLogger("clickbus.notifier.test").info("seen", extra={field: "203.0.113.77"})
    (record,) = records(lines)
    assert record[field] == "203.0.113.0"


async def test_the_kafka_brokers_address_is_logged_whole(tmp_path: Path, lines: io.StringIO) -> None:
    """The operator reads which broker is unreachable; /readyz shows the same address."""
    port = free_port()
    log = open_log(kafka_config(tmp_path, f"127.0.0.1:{port}", connect_timeout_ms=300, request_timeout_ms=300))
    await log.start()
    try:
        reason = log.health.reason
    finally:
        await log.stop(2.0)
    said = [r for r in records(lines) if r["logger"] == "clickbus.log.kafka" and "unreachable" in str(r["msg"])]
    assert said and f"('127.0.0.1', {port}" in str(said[0]["msg"])
    assert "127.0.0.0" not in lines.getvalue()
    assert f"127.0.0.1', {port}" in reason
