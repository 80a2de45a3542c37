"""Beacon throughput: the full `POST /v1/beacon/click/{ad_id}` path (verify the token, validate
the body, record durably, 202) vs a bare aiohttp handler that parses the same JSON and answers 202.

Both run as one uvloop process on the same machine under the same load generator
(`bench.load`), alternating, several rounds; the figure is the median. The beacon URL
comes from insertion, as publishers get it. After the runs the clickbus log is counted,
to show the 202s were durable records and not just answers.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.load import free_port, generator, print_rows, python, requests_per_s, serving
from bench.redirect import AD
from clickbus.config import from_mapping
from clickbus.creative import Inserter
from clickbus.keystore import load_keyring
from clickbus.log.segment_reader import read_topic_now

# The request example of the VTEX clicks reference.
BODY = b'{"user_id": "6f92d1e9-00b6-4f8b-9645-faeab321e1cc", "session_id": "5898b8d1-c250-4bb5-931b-8b9d0ee7b499"}'


def _edge_rps(connections: int, duration_s: float, data_dir: str) -> float:
    port = free_port()
    config = from_mapping({"data_dir": data_dir}, env={})
    inserted = Inserter(load_keyring(config), f"http://127.0.0.1:{port}", ttl_s=3600).insert("", AD)
    env = {
        **os.environ,
        "CLICKBUS_LISTEN": f"127.0.0.1:{port}",
        "CLICKBUS_ADMIN_LISTEN": f"127.0.0.1:{free_port()}",
        "CLICKBUS_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "CLICKBUS_DATA_DIR": data_dir,
    }
    with serving([python(), "-m", "clickbus", "run", "--no-notifier"], f"http://127.0.0.1:{port}/readyz", env=env):
        return requests_per_s(inserted.beacon_click_url, connections=connections, duration_s=duration_s, json_body=BODY)


def _bare_rps(connections: int, duration_s: float) -> float:
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1/beacon/click/x"
    with serving([python(), "-m", "bench.servers", "bare", str(port)], f"http://127.0.0.1:{port}/readyz"):
        return requests_per_s(url, connections=connections, duration_s=duration_s, json_body=BODY)


def _logged_clicks(data_dir: str) -> int:
    return len(read_topic_now(Path(data_dir) / "log", "clicks"))


def main(quick: bool = False) -> list[dict[str, Any]]:
    rounds, duration, connections = (1, 2.0, 32) if quick else (3, 5.0, 64)
    edge, bare = [], []
    with tempfile.TemporaryDirectory() as data_dir:
        for _ in range(rounds):
            bare.append(_bare_rps(connections, duration))
            edge.append(_edge_rps(connections, duration, data_dir))
        answered = sum(edge) * round(duration)
        logged = _logged_clicks(data_dir)
    value, baseline = statistics.median(edge), statistics.median(bare)
    detail = f"{generator()}, {connections} connections, {duration:.0f}s x {rounds} rounds, median"
    rows = [
        {
            "name": "beacon click, full path (embedded log, 1 worker)",
            "value": value,
            "unit": "req/s",
            "baseline": baseline,
            "baseline_name": "bare aiohttp JSON-parsing 202 handler",
            "ratio": value / baseline,
            "target": ">= 0.75",
            "detail": detail,
        },
        {
            "name": "beacon click records logged per 202 answered",
            "value": logged / answered,
            "unit": "records/answer",
            "baseline": None,
            "ratio": None,
            "target": "~1 (wrk stops counting in-flight answers)",
            "detail": f"{logged} records, about {answered:.0f} answers",
        },
    ]
    print_rows(rows)
    return rows


if __name__ == "__main__":
    main(quick="--quick" in sys.argv[1:])
