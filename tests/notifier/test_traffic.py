"""Invalid traffic and dedup windows, end to end through the notifier."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import orjson

from clickbus.log.embedded import EmbeddedLog
from clickbus.log.port import Log, Topic
from clickbus.notifier import Notifier
from clickbus.records import ImpressionRecord, Reason
from tests.notifier import factory as f
from tests.notifier.conftest import RunNotifier, StartStub
from tests.support.configs import notifier_config
from tests.support.records import at_least
from tests.support.waiting import eventually, eventually_async


async def _outcomes(log: Log, n: int) -> list[dict[str, object]]:
    return await eventually_async(lambda: at_least(log, Topic.DELIVERIES, n))


async def test_invalid_traffic_is_recorded_never_delivered(
    log: Log, stubs: StartStub, running: RunNotifier, tmp_path: Path
) -> None:
    stub = await stubs()
    invalid = {
        "bot": f.click(13, user_agent=f.CRAWLER_UA),
        "expired": f.click(13, valid=False, reason=Reason.EXPIRED),
    }
    valid = f.click(13)
    async with running(notifier_config(tmp_path, {13: {"click_uri": stub.url}})):
        await f.append(log, *invalid.values(), valid)
        outcomes = await _outcomes(log, 3)
    assert [r.webhook_id for r in stub.received] == [valid.click_id]
    verdicts = {o["click_id"]: (o["outcome"], o["reason"]) for o in outcomes}
    assert verdicts == {
        **{c.click_id: ("invalid", reason) for reason, c in invalid.items()},
        valid.click_id: ("delivered", None),
    }


async def test_duplicates_within_window_dropped_and_past_it_delivered(
    log: Log, stubs: StartStub, running: RunNotifier, tmp_path: Path
) -> None:
    stub = await stubs()
    first = f.click(13, user=42, auction_id_64=1)
    again = f.click(13, user=42, auction_id_64=1)  # same member, user, device and ad impression: a duplicate
    other_user = f.click(13, user=43, auction_id_64=1)
    later = f.click(13, user=42, auction_id_64=1)
    async with running(notifier_config(tmp_path, {13: {"click_uri": stub.url}}, click_window_s=0.5)):
        await f.append(log, first, again, other_user)
        await _outcomes(log, 3)
        await asyncio.sleep(0.6)
        await f.append(log, later)
        outcomes = await _outcomes(log, 4)
    assert sorted(r.webhook_id for r in stub.received) == sorted([first.click_id, other_user.click_id, later.click_id])
    assert {o["click_id"]: o["reason"] for o in outcomes}[again.click_id] == Reason.DUPLICATE


async def test_crawler_click_does_not_hide_a_person(
    log: Log, stubs: StartStub, running: RunNotifier, tmp_path: Path
) -> None:
    stub = await stubs()
    bot = f.click(13, user=7, user_agent=f.CRAWLER_UA, device="same")
    person = f.click(13, user=7, device="same")
    async with running(notifier_config(tmp_path, {13: {"click_uri": stub.url}})):
        await f.append(log, bot, person)
        await _outcomes(log, 2)
    assert [r.webhook_id for r in stub.received] == [person.click_id]


async def test_dedup_window_rebuilt_after_restart(
    log: Log, stubs: StartStub, running: RunNotifier, tmp_path: Path
) -> None:
    stub = await stubs()
    config = notifier_config(tmp_path, {13: {"click_uri": stub.url}})
    first = f.click(13, user=42)
    async with running(config):
        await f.append(log, first)
        await _outcomes(log, 1)
    duplicate = f.click(13, user=42, auction_id_64=first.auction_id_64)
    async with running(config):
        await f.append(log, duplicate)
        outcomes = await _outcomes(log, 2)
    assert [r.webhook_id for r in stub.received] == [first.click_id]
    by_click = {o["click_id"]: o for o in outcomes}  # Kafka keeps no order across partitions
    assert by_click[duplicate.click_id]["reason"] == Reason.DUPLICATE


async def test_test_clicks_are_delivered_with_test_true(
    log: Log, stubs: StartStub, running: RunNotifier, tmp_path: Path
) -> None:
    stub = await stubs()
    async with running(notifier_config(tmp_path, {13: {"click_uri": stub.url}})):
        await f.append(log, f.click(13, test=True), f.click(13, test=False))
        await eventually(lambda: len(stub.received) == 2)
    assert sorted(orjson.loads(r.body)["click_request"]["test"] for r in stub.received) == [False, True]


async def test_malformed_record_is_skipped(log: Log, stubs: StartStub, running: RunNotifier, tmp_path: Path) -> None:
    stub = await stubs()
    valid = f.click(13)
    async with running(notifier_config(tmp_path, {13: {"click_uri": stub.url}})):
        await log.append(Topic.CLICKS, b"junk", b'{"not": "a click"}')
        await f.append(log, valid)
        outcomes = await _outcomes(log, 2)
    assert [o["outcome"] for o in outcomes] == ["malformed", "delivered"]


async def test_click_for_unknown_member_is_recorded(
    log: Log, stubs: StartStub, running: RunNotifier, tmp_path: Path
) -> None:
    stub = await stubs()
    async with running(notifier_config(tmp_path, {13: {"click_uri": stub.url}})):
        await f.append(log, f.click(99))
        (outcome,) = await _outcomes(log, 1)
    assert outcome["outcome"] == "no_bidder"
    assert stub.received == []


async def test_duplicate_impressions_are_recorded_invalid(
    log: Log, stubs: StartStub, running: RunNotifier, tmp_path: Path
) -> None:
    stub = await stubs()
    base = f.click(13, user=5)
    fields = {k.name: getattr(base, k.name) for k in dataclasses.fields(ImpressionRecord) if hasattr(base, k.name)}
    first = ImpressionRecord(**{**fields, "impression_id": "imp-1"})
    again = ImpressionRecord(**{**fields, "impression_id": "imp-2"})
    async with running(notifier_config(tmp_path, {13: {"click_uri": stub.url}})):
        for record in (first, again):
            await log.append(Topic.IMPRESSIONS, record.dedup_key(), record.to_json(), record.headers())
        (outcome,) = await _outcomes(log, 1)
    assert (outcome["click_id"], outcome["outcome"], outcome["reason"]) == ("imp-2", "invalid", Reason.DUPLICATE)
    assert stub.received == []


SERVER_AGENTS = ["curl/7.88.1", "python-requests/2.31.0", "Go-http-client/1.1", "axios/1.6.7", "node-fetch/1.0"]


async def test_server_clicks_skip_the_crawler_check(
    log: Log, stubs: StartStub, running: RunNotifier, tmp_path: Path
) -> None:
    """A server click's user agent is the publisher's server: delivered; a redirect with it is still a bot."""
    stub = await stubs()
    server = [f.click(13, user_agent=ua, source="server", user_id_64=0, auction_id_64=0) for ua in SERVER_AGENTS]
    redirect = f.click(13, user_agent="curl/7.88.1")
    async with running(notifier_config(tmp_path, {13: {"click_uri": stub.url}})):
        await f.append(log, *server, redirect)
        outcomes = await _outcomes(log, len(server) + 1)
    assert sorted(r.webhook_id for r in stub.received) == sorted(c.click_id for c in server)
    assert {o["click_id"]: o["reason"] for o in outcomes}[redirect.click_id] == Reason.BOT


async def test_a_duplicate_written_by_another_edge_worker_is_still_a_duplicate(
    stubs: StartStub, tmp_path: Path
) -> None:
    # `--workers 2` on the embedded log: each worker appends to a partition of its own
    workers = [EmbeddedLog(tmp_path / "log", partition=0), EmbeddedLog(tmp_path / "log", partition=1)]
    for worker in workers:
        await worker.start()
    stub = await stubs()
    first = f.click(13, user=42, auction_id_64=1)
    again = f.click(13, user=42, auction_id_64=1)  # same member, user, device and ad impression: a duplicate
    try:
        await f.append(workers[0], first)
        await f.append(workers[1], again)
        notifier = Notifier(notifier_config(tmp_path, {13: {"click_uri": stub.url}}), workers[0])
        await notifier.start()
        try:
            outcomes = await _outcomes(workers[0], 2)
        finally:
            await notifier.stop(5.0)
    finally:
        for worker in workers:
            await worker.stop(5.0)
    assert len(stub.received) == 1 and stub.received[0].webhook_id in (first.click_id, again.click_id)
    assert sorted(str(o["reason"] or "") for o in outcomes) == ["", Reason.DUPLICATE]
