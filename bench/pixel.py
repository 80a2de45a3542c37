"""Impression pixel throughput: the full `GET /i/{token}` path (verify, record durably, answer the GIF)
vs a bare aiohttp handler answering the same 43-byte GIF, same run, pinned (`bench.load`)."""

from __future__ import annotations

import sys
from typing import Any

from bench.load import Target, bare_server, clickbus_run, compared, medians, pinning, print_rows

EDGE = Target(clickbus_run("--no-notifier"), lambda server: server.insertion().impression_url)
BARE = Target(bare_server(), lambda server: server.url + "/i/x")


def main(quick: bool = False) -> list[dict[str, Any]]:
    rounds, duration, connections = (1, 3.0, 64) if quick else (3, 5.0, 64)
    rates = medians({"bare": BARE, "edge": EDGE}, rounds=rounds, duration_s=duration, connections=connections)
    detail = f"{pinning()}, {connections} connections, {duration:.0f}s x {rounds} rounds, median"
    row = compared(
        "impression pixel `/i`, `clickbus run --no-notifier` (embedded log)",
        rates["edge"],
        rates["bare"],
        "bare aiohttp handler answering the same GIF",
        ">= 0.6",
        detail,
    )
    print_rows([row])
    return [row]


if __name__ == "__main__":
    main(quick="--quick" in sys.argv[1:])
