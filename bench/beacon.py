"""Beacon throughput: the full `POST /v1/beacon/click/{ad_id}` path (verify the token, validate
the body, record durably, 202) vs a bare aiohttp handler that parses the same JSON and answers 202.

Both run pinned under the same load (`bench.load`), taking turns, several rounds; the figure is
the median. The beacon URL comes from insertion, as publishers get it. After one more run the
clickbus log is read back and counted, to show the 202s were durable records and not just answers.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from bench.load import (
    Server,
    Target,
    bare_server,
    clickbus_run,
    compared,
    medians,
    pinning,
    print_rows,
    requests_per_s,
)
from clickbus import config as configuration
from clickbus.log import open_log
from clickbus.log.port import Topic

# The request example of the VTEX clicks reference.
BODY = b'{"user_id": "6f92d1e9-00b6-4f8b-9645-faeab321e1cc", "session_id": "5898b8d1-c250-4bb5-931b-8b9d0ee7b499"}'
EDGE = Target(clickbus_run("--no-notifier"), lambda server: server.insertion().beacon_click_url, json_body=BODY)
BARE = Target(bare_server(), lambda server: server.url + "/v1/beacon/click/x", json_body=BODY)


async def logged(server: Server, topic: str) -> int:
    """Records of `topic` in the server's log, read through the log port (whichever adapter it is)."""
    log = open_log(configuration.load(server.config_path, env={}))
    await log.start()
    try:
        return sum([1 async for _ in log.read(topic, from_beginning=True, follow=False)])
    finally:
        await log.stop(10)


def records_per_answer(duration_s: float, connections: int) -> tuple[int, float]:
    """Records logged and 202s answered in one run of the edge."""
    with Server(list(EDGE.argv)) as server:
        answered = duration_s * requests_per_s(
            EDGE.url(server), connections=connections, duration_s=duration_s, json_body=BODY
        )
        return asyncio.run(logged(server, Topic.CLICKS)), answered


def main(quick: bool = False) -> list[dict[str, Any]]:
    rounds, duration, connections = (1, 3.0, 64) if quick else (3, 5.0, 64)
    rates = medians({"bare": BARE, "edge": EDGE}, rounds=rounds, duration_s=duration, connections=connections)
    detail = f"{pinning()}, {connections} connections, {duration:.0f}s x {rounds} rounds, median"
    records, answered = records_per_answer(duration, connections)
    rows = [
        compared(
            "beacon click, `clickbus run --no-notifier` (embedded log)",
            rates["edge"],
            rates["bare"],
            "bare aiohttp JSON-parsing 202 handler",
            ">= 0.6",
            detail,
        ),
        {
            "name": "beacon click records logged per 202 answered",
            "value": records / answered,
            "unit": "records/answer",
            "baseline": None,
            "ratio": None,
            "target": "~1 (wrk stops counting in-flight answers)",
            "detail": f"{records} records, about {answered:.0f} answers",
        },
    ]
    print_rows(rows)
    return rows


if __name__ == "__main__":
    main(quick="--quick" in sys.argv[1:])
