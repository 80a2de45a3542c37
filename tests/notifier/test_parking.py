"""Parked retries across restarts, dead letters, and `clickbus dlq list|replay`."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from clickbus import cli
from clickbus.config import Config
from clickbus.log.embedded import EmbeddedLog
from clickbus.log.port import Log, Topic
from clickbus.metrics import Metrics, create_metrics
from clickbus.notifier import Notifier, dlq
from tests.notifier import factory as f
from tests.notifier.conftest import RunNotifier, StartStub
from tests.support.configs import notifier_config
from tests.support.records import at_least, records
from tests.support.waiting import eventually, eventually_async


async def test_parked_retry_survives_restart(log: Log, stubs: StartStub, running: RunNotifier, tmp_path: Path) -> None:
    stub = await stubs(script=["500"])
    clicked = f.click(13)
    config = notifier_config(tmp_path, {13: {"click_uri": stub.url}}, retry_base_s=1.0, retry_max_delay_s=1.0)
    async with running(config):
        await f.append(log, clicked)
        await eventually_async(lambda: records(log, Topic.RETRY))
    assert len(stub.received) == 1  # stopped before the retry came due
    async with running(config):
        await eventually(lambda: len(stub.received) == 2, timeout_s=5)
        outcomes = await eventually_async(lambda: _delivered(log))
    assert outcomes[-1]["attempt"] == 2
    assert [r.webhook_id for r in stub.received] == [clicked.click_id] * 2


async def _delivered(log: Log) -> list[dict[str, object]] | None:
    outcomes = await records(log, Topic.DELIVERIES)
    return outcomes if outcomes and outcomes[-1]["outcome"] == "delivered" else None


async def test_exhausted_retries_are_dead_lettered(
    log: Log, stubs: StartStub, running: RunNotifier, tmp_path: Path
) -> None:
    stub = await stubs(default="500")
    config = notifier_config(tmp_path, {13: {"click_uri": stub.url}}, retry_horizon_s=0.3, breaker_failures=100)
    clicked = f.click(13)
    async with running(config):
        await f.append(log, clicked)
        (dead,) = await eventually_async(lambda: records(log, Topic.DLQ))
    assert dead["reason"] == "exhausted"
    assert dead["click"]["click_id"] == clicked.click_id
    assert dead["last_status"] == 500
    assert dead["attempt"] == len(stub.received) >= 2


@pytest.mark.parametrize(("status", "reason"), [("400", "rejected"), ("302", "rejected"), ("404", "rejected")])
async def test_refused_answers_are_dead_lettered(
    log: Log, stubs: StartStub, running: RunNotifier, tmp_path: Path, status: str, reason: str
) -> None:
    stub = await stubs(default=status)
    async with running(notifier_config(tmp_path, {13: {"click_uri": stub.url}})):
        await f.append(log, f.click(13))
        (dead,) = await eventually_async(lambda: records(log, Topic.DLQ))
    assert (dead["reason"], dead["last_status"], dead["attempt"]) == (reason, int(status), 1)
    assert len(stub.received) == 1


def _config_file(tmp_path: Path, config: Config) -> Path:
    path = tmp_path / "clickbus.toml"
    path.write_text(f'data_dir = "{config.data_dir}"\n[notifier]\ngroup = "{config.notifier.group}"\n')
    return path


async def test_dead_letters_listed_and_replayed(
    log: Log, stubs: StartStub, running: RunNotifier, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if not isinstance(log, EmbeddedLog):
        pytest.skip("the CLI opens the configured log; this test drives it on the embedded one")
    stub = await stubs(script=["400", "400"])
    config = notifier_config(tmp_path, {13: {"click_uri": stub.url}})
    clicks = [f.click(13), f.click(13)]
    path = _config_file(tmp_path, config)
    async with running(config):
        await f.append(log, *clicks)
        await eventually_async(lambda: at_least(log, Topic.DLQ, 2))
        assert await asyncio.to_thread(cli.main, ["dlq", "list", "--config", str(path)]) == 0
        listed = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert sorted(d["click_id"] for d in listed) == sorted(c.click_id for c in clicks)
        assert {d["reason"] for d in listed} == {"rejected"}

        assert await asyncio.to_thread(cli.main, ["dlq", "replay", "--config", str(path)]) == 0
        await eventually(lambda: len(stub.bodies("200")) == 2)
        assert await asyncio.to_thread(cli.main, ["dlq", "list", "--config", str(path)]) == 0
        assert capsys.readouterr().out == ""
    assert sorted(r.webhook_id for r in stub.received if r.answered == "200") == sorted(c.click_id for c in clicks)
    assert await dlq.pending(log, config.notifier.group) == []


async def test_retry_queue_gauge_counts_a_parked_click_until_it_is_read_back(
    log: Log, stubs: StartStub, tmp_path: Path
) -> None:
    """A parked click counts from its write until the retry loop is done with it, never dropping to 0.

    It counts while its record waits in the log to be read back, and, parked again from the retry
    loop (its breaker is open), its new record counts before its old one is finished. The gauge is
    sampled at every turn of the event loop.
    """
    stub = await stubs(default="500")
    config = notifier_config(
        tmp_path, {13: {"click_uri": stub.url}}, breaker_failures=1, breaker_cooldown_s=30, retry_horizon_s=60
    )
    metrics = create_metrics()
    history: list[float] = []
    sampler = asyncio.create_task(_sample_retry_depth(metrics, history))
    notifier = Notifier(config, log, metrics)
    await notifier.start()
    try:
        await f.append(log, f.click(13))
        # parked twice: after its failed attempt, then (read back, due) for the open breaker
        await eventually_async(lambda: at_least(log, Topic.RETRY, 2))
        await eventually(lambda: history[-1] == 1)
        running = list(history)  # a stop lets go of the click, leaving it in the log for the next start
    finally:
        await notifier.stop(5.0)
        sampler.cancel()
    assert len(stub.received) == 1  # the second time the breaker held it back
    # 1 from the first park on; 2 for the moment both its records are held; 1 again, waiting for the breaker
    assert running == [0, 1, 2, 1]


async def _sample_retry_depth(metrics: Metrics, history: list[float]) -> None:
    """Append each new value of the retry-queue gauge, looking at every turn of the event loop."""
    while True:
        value = metrics.registry.get_sample_value("clickbus_retry_queue_records") or 0.0
        if not history or history[-1] != value:
            history.append(value)
        await asyncio.sleep(0)


async def test_a_dead_letter_gives_the_last_steps_own_status_and_error(
    log: Log, stubs: StartStub, running: RunNotifier, tmp_path: Path
) -> None:
    """Its first attempt answered 500; its last step was held by the open breaker: no status, and that reason."""
    stub = await stubs(default="500")
    settings = {"breaker_failures": 1, "breaker_cooldown_s": 30.0, "retry_horizon_s": 0.5}
    config = notifier_config(tmp_path, {13: {"click_uri": stub.url}}, **settings)
    async with running(config):
        await f.append(log, f.click(13))
        (dead,) = await eventually_async(lambda: records(log, Topic.DLQ))
    assert len(stub.received) == 1
    assert (dead["reason"], dead["last_status"], dead["last_error"]) == ("exhausted", None, "circuit breaker open")
    outcomes = await records(log, Topic.DELIVERIES)
    assert [(o["outcome"], o["status"]) for o in outcomes] == [("retry", 500), ("dead", None)]
