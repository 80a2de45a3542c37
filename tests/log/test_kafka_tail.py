"""`clickbus tail` on Kafka without --follow: it ends within a bounded time whatever the broker's state."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from clickbus.config import Config
from clickbus.log import open_log
from clickbus.log.port import Topic
from tests.log.conftest import KafkaConfigFactory
from tests.support.kafka_broker import TansuBroker
from tests.support.waiting import eventually

BOUND_S = 15.0  # connect (2 s) and request (2 s) timeouts, a process start, and a slow shared machine


def write_conf(path: Path, config: Config) -> Path:
    kafka = config.log.kafka
    path.write_text(
        f'[log]\nbackend = "kafka"\ntopic_prefix = "{config.log.topic_prefix}"\n'
        f'[log.kafka]\nbootstrap_servers = "{kafka.bootstrap_servers[0]}"\nidempotence = false\n'
        "connect_timeout_ms = 2000\nrequest_timeout_ms = 2000\n"
    )
    return path


def tail(conf: Path) -> tuple[int, bytes, bytes, float]:
    """Run `clickbus tail --from-beginning`; its exit code, output, error output and duration."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "clickbus", "tail", "--config", str(conf), "--from-beginning"],
        capture_output=True,
        timeout=BOUND_S * 4,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    return done.returncode, done.stdout, done.stderr, time.monotonic() - started


async def fill(config: Config, n: int) -> None:
    log = open_log(config)
    await log.start()
    for i in range(n):
        await log.append(Topic.CLICKS, b"k%d" % i, orjson.dumps({"n": i}))
    await log.stop(5)


async def test_tail_ends_with_a_clear_error_when_the_broker_is_unreachable(
    kafka_config: KafkaConfigFactory, tmp_path: Path
) -> None:
    config = kafka_config(TansuBroker())  # a free port where nothing listens
    code, out, err, took = await asyncio.to_thread(tail, write_conf(tmp_path / "c.toml", config))
    assert code == 1 and out == b"" and took < BOUND_S
    assert b"clickbus: cannot read " in err and b"cannot connect" in err


@pytest.mark.parametrize("records", [0, 25])
async def test_tail_ends_after_the_broker_was_replaced(
    own_broker: TansuBroker, kafka_config: KafkaConfigFactory, tmp_path: Path, records: int
) -> None:
    config = kafka_config(own_broker)
    await fill(config, 25)
    own_broker.stop()
    own_broker.start()  # a new, empty cluster where the old one was
    await fill(config, records)
    code, out, err, took = await asyncio.to_thread(tail, write_conf(tmp_path / "c.toml", config))
    assert (code, err) == (0, b"") and took < BOUND_S
    assert sorted(orjson.loads(line)["n"] for line in out.splitlines()) == list(range(records))


async def test_tail_stops_at_the_end_it_found_when_the_broker_dies_while_reading(
    own_broker: TansuBroker, kafka_config: KafkaConfigFactory, tmp_path: Path
) -> None:
    config = kafka_config(own_broker)
    await fill(config, 25)
    conf = write_conf(tmp_path / "c.toml", config)
    reading = asyncio.create_task(asyncio.to_thread(tail, conf))
    await asyncio.sleep(0.5)
    own_broker.freeze()  # mid-read, or just before: either way the read must end
    try:
        code, _, err, took = await reading
    finally:
        own_broker.thaw()
    assert took < BOUND_S
    assert code == 0 or (code == 1 and err.startswith(b"clickbus: ")), err


class Follower:
    """`clickbus tail --follow --from-beginning` in the background, its output collected as it comes."""

    def __init__(self, conf: Path) -> None:
        command = [sys.executable, "-m", "clickbus", "tail", "--config", str(conf), "--from-beginning", "--follow"]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines: list[bytes] = []
        self.errors: list[bytes] = []
        self._readers = [
            asyncio.create_task(asyncio.to_thread(_collect, self.process.stdout, self.lines)),
            asyncio.create_task(asyncio.to_thread(_collect, self.process.stderr, self.errors)),
        ]

    def numbers(self) -> list[int]:
        return sorted(orjson.loads(line)["n"] for line in list(self.lines))

    async def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        await asyncio.to_thread(self.process.wait, 10)
        await asyncio.gather(*self._readers)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


def _collect(stream: Any, into: list[bytes]) -> None:
    for line in stream:
        into.append(line)


async def test_tail_follow_goes_on_after_the_broker_was_replaced(
    own_broker: TansuBroker, kafka_config: KafkaConfigFactory, tmp_path: Path
) -> None:
    """A restarted Tansu is a new, empty cluster: the follower reads its topic from the beginning and goes on."""
    config = kafka_config(own_broker, partitions=1)  # one partition: the new log is surely shorter than the old one
    await fill(config, 25)
    follower = Follower(write_conf(tmp_path / "c.toml", config))
    try:
        await eventually(lambda: follower.numbers() == list(range(25)), timeout_s=BOUND_S)
        own_broker.stop()
        own_broker.start()
        await fill(config, 10)  # the new cluster's records, written before the follower is back
        await eventually(lambda: follower.numbers() == sorted([*range(25), *range(10)]), timeout_s=BOUND_S)
        await fill(config, 3)  # and it goes on following
        await eventually(lambda: len(follower.lines) == 25 + 10 + 3, timeout_s=BOUND_S)
        assert follower.process.poll() is None
    finally:
        await follower.stop()
    said = b"".join(follower.errors)
    assert b"restarted below the offset read (the broker was replaced?)" in said, said
    assert all(line.startswith(b"clickbus: ") for line in follower.errors), said
