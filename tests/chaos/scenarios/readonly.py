"""The data directory turns read-only under click load, the edge is restarted on it, then it is writable again.

`make run`'s shape: one `clickbus run` with its notifier inside. Under load the data directory is
made read-only (a read-only bind mount over it: `chmod` stops no root process); the running edge's
open files go on beneath, so the operator restarts it (SIGTERM, which must exit 0 without a
traceback). The new edge cannot open its log or the notifier's offsets: every click must be
refused (503, never a 302 for a click not recorded), `/readyz` must be 503 (only `unavailable` on
the public listener, the reason on the internal one) and a notifier start that fails is tried again.
Then the directory is writable again: readiness must come back by itself, the notifier start, and
every click answered 302 be delivered. Needs root (to mount); skipped with the reason otherwise.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.chaos.accounting import Figures, tally
from tests.chaos.load import ClickLoad
from tests.chaos.params import Params
from tests.chaos.stack import Stack, deliveries, settle
from tests.support.bidder import BidderStub
from tests.support.mounts import ReadOnly
from tests.support.waiting import eventually_async


async def _readyz(session: aiohttp.ClientSession, base: str) -> tuple[int, dict[str, Any]]:
    async with session.get(base + "/readyz") as response:
        return response.status, await response.json()


async def _seconds_until(check: Any, timeout_s: float) -> float:
    started = time.monotonic()
    await eventually_async(check, timeout_s)
    return round(time.monotonic() - started, 1)


def _not_json(logs: str) -> list[str]:
    """Lines of a JSON log that are not JSON: a traceback printed at exit."""
    return [line for line in logs.splitlines() if line and not line.startswith("{")]


async def run(directory: Path, params: Params) -> Figures:
    stub = BidderStub()
    await stub.start()
    stack = Stack(directory, {13: stub.url}, edge_notifier=True)
    readonly = ReadOnly(stack.config.data_dir)
    failures: list[str] = []
    extra: dict[str, Any] = {}
    phase_s = max(2.0, params.readonly_s / 3)
    try:
        stack.edge.start()
        load = await ClickLoad(stack.edge.url, stack.keyring, (13,), rate_per_s=params.rate_per_s).start()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            await asyncio.sleep(phase_s)
            readonly.on()
            extra["restart_exit"] = await asyncio.to_thread(stack.edge.stop)
            await asyncio.to_thread(stack.edge.start, ready=False)
            before = dict(load.statuses)
            await asyncio.sleep(params.readonly_s)
            public, internal = await _readyz(session, stack.edge.url), await _readyz(session, stack.edge.admin_url)
            during = [s for a, s in load.statuses.items() if a not in before]
            extra["answers_while_read_only"] = {str(s): during.count(s) for s in sorted(set(during))}
            extra["readyz_while_read_only"] = {"public": public, "internal": internal}
            if public != (503, {"status": "unavailable"}):
                failures.append(f"public /readyz while read-only: {public}")
            if internal[0] != 503 or "Read-only" not in str(internal[1].get("reason")):
                failures.append(f"internal /readyz while read-only: {internal}")
            # Whether the notifier's start fails depends on what SQLite left beside its offsets file (a WAL that
            # could not be removed at the stop lets it open read-only): shown, not judged (test_failed_start is).
            starts = [t for t in internal[1].get("tasks", []) if t["task"] == "notifier-start"]
            extra["notifier_start_failures"] = starts[0]["failures"] if starts else 0
            readonly.off()

            async def ready() -> bool:
                return (await _readyz(session, stack.edge.url))[0] == 200

            extra["ready_again_in_s"] = await _seconds_until(ready, params.settle_s)
            await asyncio.sleep(phase_s)
        await load.stop()
        records = await stack.records()
        extra["settled_in_s"] = await settle(stack, [stub], records, params.settle_s)
        dead = await stack.dead_letters()
        stack.stop_edge()
        if extra["restart_exit"] != 0:
            failures.append(f"SIGTERM on the read-only data_dir exited {extra['restart_exit']}")
        if printed := _not_json(stack.edge.logs()):
            failures.append(f"not a log line (a traceback?): {printed[:3]}")
        figures = tally(
            "readonly",
            load.statuses,
            records,
            deliveries([stub]),
            dead,
            notes=[
                f"data_dir read-only under {params.rate_per_s:.0f} clicks/s; the edge (notifier inside) restarted"
                f" on it and left {params.readonly_s:.0f} s, then the data_dir writable again"
            ],
            exit_codes=stack.exit_codes,
            failures=failures,
            **extra,
        )
    finally:
        readonly.off()
        stack.stop()
        await stub.stop()
    return figures
