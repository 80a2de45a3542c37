"""Delivery to a real bidder stub: exact body, signature, retries, outcomes, isolation."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest
from standardwebhooks import Webhook

import clickbus
from clickbus.log.port import Log, Topic
from clickbus.records import CLICK_REQUEST_FIELDS
from tests.notifier import factory as f
from tests.notifier.conftest import RunNotifier, StartStub
from tests.support.configs import notifier_config
from tests.support.records import at_least, records
from tests.support.waiting import eventually, eventually_async

XANDR_TYPES = {
    "timestamp": str,
    "auction_id_64": int,
    "member_id": int,
    "user_id_64": int,
    "referer_url": str,
    "user_agent": str,
    "userdata_json": str,
    "custom_notify_data": str,
    "test": bool,
}


async def test_bidder_receives_exact_click_request_signed(
    log: Log, stubs: StartStub, running: RunNotifier, tmp_path: Path
) -> None:
    stub = await stubs()
    config = notifier_config(tmp_path, {13: {"click_uri": stub.url, "secret": f.SECRET}})
    clicked = f.click(13, test=True)
    async with running(config):
        await f.append(log, clicked)
        await eventually(lambda: stub.received)
    got = stub.received[0]
    assert got.body == orjson.dumps(clicked.click_request())
    request = orjson.loads(got.body)["click_request"]
    assert list(request) == list(CLICK_REQUEST_FIELDS)
    assert {k: type(v) for k, v in request.items()} == XANDR_TYPES
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", request["timestamp"])
    assert request["test"] is True
    assert got.headers["webhook-id"] == clicked.click_id
    assert Webhook(f.SECRET).verify(got.body, got.headers) == orjson.loads(got.body)


async def test_unsigned_without_secret(log: Log, stubs: StartStub, running: RunNotifier, tmp_path: Path) -> None:
    stub = await stubs()
    async with running(notifier_config(tmp_path, {13: {"click_uri": stub.url}})):
        await f.append(log, f.click(13))
        await eventually(lambda: stub.received)
    assert "webhook-signature" not in stub.received[0].headers


async def test_outcome_records_click_response(log: Log, stubs: StartStub, running: RunNotifier, tmp_path: Path) -> None:
    stub = await stubs(click_response=b'{"click_response": {"credited": 3}}')
    clicked = f.click(13)
    async with running(notifier_config(tmp_path, {13: {"click_uri": stub.url}})):
        await f.append(log, clicked)
        outcomes = await eventually_async(lambda: records(log, Topic.DELIVERIES))
    (outcome,) = outcomes
    assert outcome["click_id"] == clicked.click_id
    assert outcome["outcome"] == "delivered"
    assert outcome["status"] == 200
    assert outcome["attempt"] == 1
    assert outcome["click_response"] == {"credited": 3}
    assert outcome["latency_ms"] >= 0


@pytest.mark.parametrize(
    "script",
    [["500", "200"], ["429", "200"], ["close", "200"], ["503", "close", "429", "200"], ["hang", "200"]],
)
async def test_retries_until_delivered(
    log: Log, stubs: StartStub, running: RunNotifier, tmp_path: Path, script: list[str]
) -> None:
    stub = await stubs(script=list(script))
    clicked = f.click(13)
    # 1 s: long enough that the scripted 200 is never taken for a timeout on a loaded machine (0.3 s once was)
    config = notifier_config(tmp_path, {13: {"click_uri": stub.url, "timeout_s": 1.0}})
    async with running(config):
        await f.append(log, clicked)
        await eventually(lambda: [r for r in stub.received if r.answered == "200"])

        async def delivered() -> list[dict[str, object]]:
            return [o for o in await records(log, Topic.DELIVERIES) if o["outcome"] == "delivered"]

        await eventually_async(delivered)
    outcomes = await records(log, Topic.DELIVERIES)
    assert [o["outcome"] for o in outcomes] == ["retry"] * (len(script) - 1) + ["delivered"]
    assert [o["attempt"] for o in outcomes] == list(range(1, len(script) + 1))
    assert {r.webhook_id for r in stub.received} == {clicked.click_id}
    assert len({r.body for r in stub.received}) == 1


async def test_retry_after_is_honoured(log: Log, stubs: StartStub, running: RunNotifier, tmp_path: Path) -> None:
    stub = await stubs(script=["429"], retry_after="1")
    async with running(notifier_config(tmp_path, {13: {"click_uri": stub.url}}, retry_base_s=0.01)):
        await f.append(log, f.click(13))
        await eventually(lambda: len(stub.received) == 2)
    first, second = stub.received
    assert second.at - first.at >= 1.0


async def test_rate_limiting_does_not_open_the_breaker(
    log: Log, stubs: StartStub, running: RunNotifier, tmp_path: Path
) -> None:
    stub = await stubs(script=["429", "429", "429"], retry_after="0")
    config = notifier_config(tmp_path, {13: {"click_uri": stub.url}}, breaker_failures=2, breaker_cooldown_s=60.0)
    async with running(config) as notifier:
        await f.append(log, f.click(13))
        await eventually(lambda: len(stub.received) == 4)
        assert not notifier.bidders[13].breaker.is_open


async def test_hanging_bidder_does_not_delay_another(
    log: Log, stubs: StartStub, running: RunNotifier, tmp_path: Path
) -> None:
    hung = await stubs(default="hang")
    fine = await stubs()
    members: dict[int, dict[str, object]] = {
        # its attempts outlast the test however slowly a loaded machine delivers the other bidder's clicks
        1: {"click_uri": hung.url, "timeout_s": 60.0, "concurrency": 2},
        2: {"click_uri": fine.url},
    }
    async with running(notifier_config(tmp_path, members, queue_per_slot=4)):
        await f.append(log, *[f.click(1) for _ in range(20)])
        await f.append(log, *[f.click(2) for _ in range(20)])
        await eventually(lambda: len(fine.received) == 20)
        assert hung.hanging == 2  # its two slots are still stuck, and it held nothing else up

        async def hung_clicks_parked() -> list[dict[str, object]]:
            outcomes = await records(log, Topic.DELIVERIES)
            return [o for o in outcomes if o["member_id"] == 1 and o["outcome"] == "parked"]

        async def fine_clicks_delivered() -> list[dict[str, object]]:
            # received by the stub is not yet answered: its outcome is appended after the answer
            outcomes = await records(log, Topic.DELIVERIES)
            done = [o for o in outcomes if o["member_id"] == 2 and o["outcome"] == "delivered"]
            return done if len(done) >= 20 else []

        parked = await eventually_async(hung_clicks_parked)
        delivered = await eventually_async(fine_clicks_delivered)
        await hung.stop()  # its connections drop: the stuck attempts end now, not at their timeout
    assert {o["error"] for o in parked} == {"bidder saturated"}
    assert len(delivered) == 20


async def test_burst_to_a_slow_but_answering_bidder_waits_instead_of_parking(
    log: Log, stubs: StartStub, running: RunNotifier, tmp_path: Path
) -> None:
    # Answers come every 0.25 s, well inside slot_wait_s even when a loaded machine stalls the loop for a
    # second (a 1 s slot_wait_s parked clicks once under a full suite on two busy cores); the 24 clicks are
    # 3 s of work for its two slots, so the last ones wait far past slot_wait_s.
    slot_wait_s, clicks = 2.0, 24
    stub = await stubs(delay_s=0.25)
    config = notifier_config(tmp_path, {13: {"click_uri": stub.url, "concurrency": 2}}, slot_wait_s=slot_wait_s)
    async with running(config):
        await f.append(log, *[f.click(13) for _ in range(clicks)])
        outcomes = await eventually_async(lambda: at_least(log, Topic.DELIVERIES, clicks))
    assert [o["outcome"] for o in outcomes] == ["delivered"] * clicks
    assert stub.received[-1].at - stub.received[0].at > slot_wait_s  # the burst outlasted slot_wait_s


async def test_breaker_stops_attempts_to_failing_bidder(
    log: Log, stubs: StartStub, running: RunNotifier, tmp_path: Path
) -> None:
    stub = await stubs(default="500")
    config = notifier_config(
        tmp_path, {13: {"click_uri": stub.url, "concurrency": 1}}, breaker_failures=3, breaker_cooldown_s=30.0
    )
    async with running(config):
        await f.append(log, *[f.click(13) for _ in range(10)])

        async def retries_held_back() -> bool:
            # 3 failed attempts and 7 clicks parked unattempted; then the 3 retries come due and are parked too
            outcomes = [o["outcome"] for o in await records(log, Topic.DELIVERIES)]
            return outcomes.count("retry") >= 3 and outcomes.count("parked") >= 10

        await eventually_async(retries_held_back)
    assert len(stub.received) == 3


async def test_bidder_answering_410_is_disabled(
    log: Log, stubs: StartStub, running: RunNotifier, tmp_path: Path
) -> None:
    stub = await stubs(default="410")
    async with running(notifier_config(tmp_path, {13: {"click_uri": stub.url}})) as notifier:
        await f.append(log, f.click(13))
        await eventually(lambda: notifier.bidders[13].disabled)
        await f.append(log, f.click(13))
        dead = await eventually_async(lambda: at_least(log, Topic.DLQ, 2))
    assert len(stub.received) == 1
    assert sorted(d["reason"] for d in dead) == ["disabled", "gone"]  # Kafka: no order across partitions
    assert (notifier.counts["dead"], notifier.counts["bidder_disabled"]) == (2, 1)


async def test_every_attempt_is_stamped_and_signed_anew_under_one_webhook_id(
    log: Log, stubs: StartStub, running: RunNotifier, tmp_path: Path
) -> None:
    """As the README tells bidders: the same webhook-id, a new webhook-timestamp and signature, clickbus's agent."""
    stub = await stubs(script=["500"])
    # the retry comes at least 1.1 s later (half of 2.2 s fixed): another second, so another timestamp
    member = {13: {"click_uri": stub.url, "secret": f.SECRET}}
    config = notifier_config(tmp_path, member, retry_base_s=2.2, retry_max_delay_s=2.2)
    clicked = f.click(13)
    async with running(config):
        await f.append(log, clicked)
        await eventually(lambda: len(stub.received) == 2, timeout_s=10)
    first, second = (r.headers for r in stub.received)
    assert first["webhook-id"] == second["webhook-id"] == clicked.click_id
    assert first["webhook-timestamp"] != second["webhook-timestamp"]
    assert first["webhook-signature"] != second["webhook-signature"]
    for attempt in stub.received:
        assert Webhook(f.SECRET).verify(attempt.body, attempt.headers) == orjson.loads(attempt.body)
        assert attempt.headers["User-Agent"] == f"clickbus/{clickbus.__version__}"
