"""Damaged segments of the embedded log under click load: a tail cut short while the edge is stopped, one byte
flipped in the active or in a closed segment while it runs.

`clickbus run` (embedded log, its notifier inside) delivers to a bidder stub throughout. Clicks
whose frames the fault destroyed are counted apart (`destroyed`), found by decoding those frames
before the damage; every other click must be recorded and delivered. The cut tail's clicks were
delivered before the cut: what must not happen is a click after it getting an offset the group
had committed past (it was never delivered). A flipped byte must cost its own click only, be
logged once and counted in `clickbus_log_corrupt_records_total`, and show on `/readyz`.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import re
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from clickbus.log.group_offsets import GroupOffsets
from clickbus.log.segment import bases, partition_dir, segment_path
from clickbus.log.segment_reader import log_end, read_topic_now
from clickbus.log.spool_format import Frame, decode_record, read_frames
from tests.chaos.accounting import Figures, tally
from tests.chaos.load import ClickLoad
from tests.chaos.params import Params
from tests.chaos.stack import Stack, deliveries, settle
from tests.support.bidder import BidderStub
from tests.support.waiting import eventually

CUT_BYTES = 400  # as in issue #16: about one click record
SLOW_S = 0.2  # the bidder's answer time while the fault is made: the notifier falls behind the edge
BEHIND = 50  # the damaged record lies at least this many records past the group's commit
REFERER = "https://news.example/" + "a" * 4000  # big records: a 1 MiB segment rolls after about 200 clicks
NOTIFIER = {"max_in_flight": 2}  # with the slow bidder, a few clicks a second: the backlog is on disk, unread


def _auction(frame: Frame) -> int:
    return int(orjson.loads(decode_record(frame.seq, frame.payload).value)["auction_id_64"])


def _committed(log_path: Path, group: str) -> int:
    offsets = GroupOffsets(log_path / "offsets.sqlite3")
    try:
        return offsets.groups("clicks", 0).get(group, 0)
    finally:
        offsets.close()


async def _metric(stack: Stack, name: str) -> float:
    async with aiohttp.ClientSession() as session, session.get(stack.edge.admin_url + "/metrics") as response:
        text = await response.text()
    found = re.search(rf'^{name}\{{topic="clicks"\}} (\S+)$', text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def _readyz(stack: Stack) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(stack.edge.admin_url + "/readyz") as response:
        return response.status, await response.json()


# -- the torn tail ---------------------------------------------------------------------------


def _cut(directory: Path, size: int) -> tuple[list[int], int]:
    """Cut `size` bytes off the active segment: the auction ids of the clicks whose frames it touches, and its base."""
    base = bases(directory)[-1]
    segment = segment_path(directory, base)
    raw = segment.read_bytes()
    cut_at = len(raw) - size
    destroyed = [_auction(frame) for frame in read_frames(raw) if frame.end > cut_at]
    with segment.open("r+b") as out:
        out.truncate(cut_at)
    return destroyed, base


async def torn_tail(directory: Path, params: Params) -> Figures:
    stub = BidderStub()
    await stub.start()
    stack = Stack(directory, {13: stub.url}, edge_notifier=True)
    log_path = stack.config.log_path
    clicks = partition_dir(log_path, "clicks", 0)
    failures: list[str] = []
    try:
        stack.edge.start()
        load = await ClickLoad(stack.edge.url, stack.keyring, (13,), rate_per_s=params.rate_per_s).start()
        await asyncio.sleep(params.damage_phase_s)
        await load.pause()  # so that the group has committed every click when the edge stops
        await settle(stack, [stub], await stack.records(), params.settle_s)
        stopped = await asyncio.to_thread(stack.edge.stop)
        committed = await asyncio.to_thread(_committed, log_path, stack.config.notifier.group)
        end_before = await asyncio.to_thread(log_end, log_path, "clicks", 0)
        destroyed, _ = await asyncio.to_thread(_cut, clicks, CUT_BYTES)
        before_restart = set(load.statuses)
        await asyncio.to_thread(stack.edge.start)
        load.resume()
        await asyncio.sleep(params.damage_phase_s)
        await load.stop()
        records = await stack.records()
        took = await settle(stack, [stub], records, params.settle_s)
        entries = await asyncio.to_thread(read_topic_now, log_path, "clicks")
        after = [e for e in entries if int(orjson.loads(e.value)["auction_id_64"]) not in before_restart]
        reused = [e.offset for e in after if e.offset < committed]
        if reused:
            failures.append(f"clicks after the cut got offsets below the committed {committed}: {reused[:5]}")
        if stopped != 0:
            failures.append(f"the edge's stop before the cut exited {stopped}")
        delivered = {int(orjson.loads(r.body)["click_request"]["auction_id_64"]) for r in stub.received}
        await asyncio.to_thread(stack.stop_edge)
        figures = tally(
            "torn-tail",
            {a: s for a, s in load.statuses.items() if a not in destroyed},
            records,
            deliveries([stub]),
            await stack.dead_letters(),
            notes=[
                f"clickbus run (embedded log, notifier inside) stopped under load, {CUT_BYTES} bytes cut off the"
                " active segment, started again under load"
            ],
            destroyed=len(destroyed),
            committed_at_stop=committed,
            end_at_stop=end_before,
            first_offset_after=min((e.offset for e in after), default=None),
            destroyed_delivered_before_the_cut=sum(1 for a in destroyed if a in delivered),
            settled_in_s=took,
            exit_codes=stack.exit_codes,
            failures=failures,
        )
    finally:
        stack.stop()
        await stub.stop()
    return figures


# -- one flipped byte ------------------------------------------------------------------------


def _victim(log_path: Path, group: str, where: str) -> tuple[int, int] | None:
    """(segment base, offset) of a record well ahead of the group, in the active or a closed segment, or None yet."""
    clicks = partition_dir(log_path, "clicks", 0)
    found = bases(clicks)
    committed = _committed(log_path, group)
    first = committed + BEHIND
    if where == "active":
        end = log_end(log_path, "clicks", 0)
        victim = max(first, found[-1], end - 10)
        return (found[-1], victim) if victim < end - 5 else None
    for base, following in itertools.pairwise(found):
        victim = max(first, base + 5)
        if victim < following - 5:
            return base, victim
    return None


def _flip(directory: Path, base: int, offset: int) -> int:
    """Flip one byte in the middle of the frame of `offset` (written and synced long ago); its click's auction id."""
    segment = segment_path(directory, base)
    raw = segment.read_bytes()
    frame = next(f for f in read_frames(raw) if f.seq == offset)
    at = frame.end - len(frame.payload) // 2
    with segment.open("r+b") as out:
        out.seek(at)
        out.write(bytes([raw[at] ^ 0x20]))
    return _auction(frame)


async def flipped_byte(directory: Path, params: Params, *, where: str) -> Figures:
    stub = BidderStub(delay_s=SLOW_S)
    await stub.start()
    closed = where == "closed"
    stack = Stack(
        directory,
        {13: stub.url},
        edge_notifier=True,
        notifier_settings=NOTIFIER,
        embedded_settings={"segment_mb": 1} if closed else None,
    )
    log_path = stack.config.log_path
    group = stack.config.notifier.group
    failures: list[str] = []
    try:
        stack.edge.start()
        load = ClickLoad(stack.edge.url, stack.keyring, (13,), rate_per_s=params.rate_per_s, referer=REFERER)
        await load.start()
        await asyncio.sleep(params.damage_phase_s)
        pick = functools.partial(_victim, log_path, group, where)
        base, offset = await eventually(lambda: pick(), timeout_s=60)
        destroyed = await asyncio.to_thread(_flip, partition_dir(log_path, "clicks", 0), base, offset)
        stub.delay_s = 0.0  # the notifier catches up, through the damaged frame
        await asyncio.sleep(params.damage_phase_s)
        await load.stop()
        records = await stack.records()
        took = await settle(stack, [stub], records, params.settle_s)
        counted = await _metric(stack, "clickbus_log_corrupt_records_total")
        status, ready = await _readyz(stack)
        await asyncio.to_thread(stack.stop_edge)
        logged = stack.edge.logs().count("corrupt record(s) skipped")
        if counted != 1:
            failures.append(f"clickbus_log_corrupt_records_total is {counted}, not 1")
        if logged != 1:
            failures.append(f"the damage was logged {logged} times, not once")
        if status != 200 or not any("corrupt" in w for w in ready.get("warnings", [])):
            failures.append(f"/readyz did not show it: {status} {ready}")
        figures = tally(
            f"flipped-byte-{where}",
            {a: s for a, s in load.statuses.items() if a != destroyed},
            records,
            deliveries([stub]),
            await stack.dead_letters(),
            notes=[
                f"one byte flipped in the {where} segment of clickbus run (embedded log, notifier inside)"
                f" under load, {BEHIND}+ records ahead of the notifier"
            ],
            damaged_offset=offset,
            destroyed=1,
            destroyed_recorded=any(int(r["auction_id_64"]) == destroyed for r in records),
            corrupt_records_total=counted,
            readyz=ready,
            segments=len(bases(partition_dir(log_path, "clicks", 0))),
            settled_in_s=took,
            exit_codes=stack.exit_codes,
            failures=failures,
        )
    finally:
        stack.stop()
        await stub.stop()
    return figures


flipped_byte_active = functools.partial(flipped_byte, where="active")
flipped_byte_closed = functools.partial(flipped_byte, where="closed")
