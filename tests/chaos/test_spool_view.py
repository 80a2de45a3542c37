"""The spool view the broker scenario counts by: each click a running Kafka log answered from its spool."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson

from clickbus.log import open_log
from clickbus.log.kafka import KafkaLog
from clickbus.log.port import Topic
from clickbus.log.spool import Spool
from tests.chaos.spool_view import spooled_auctions
from tests.support import configs
from tests.support.kafka_broker import TansuBroker, own_broker
from tests.support.waiting import eventually

__all__ = ["own_broker"]


def click(auction: int) -> bytes:
    return orjson.dumps({"auction_id_64": str(auction)})


async def test_the_view_holds_every_click_answered_from_the_spool_until_it_is_shipped(
    own_broker: TansuBroker, tmp_path: Path
) -> None:
    config = configs.kafka_config(tmp_path, own_broker.bootstrap)
    log = open_log(config)
    assert isinstance(log, KafkaLog)
    await log.start()
    try:
        await log.append(Topic.CLICKS, b"k", click(1))  # acknowledged by the broker: never in the spool
        own_broker.stop()
        await asyncio.gather(*(log.append(Topic.CLICKS, b"k%d" % n, click(n)) for n in range(10, 30)))
        await log.append(Topic.IMPRESSIONS, b"i", b"{}")  # not a click
        assert not log.health.ready
        assert spooled_auctions(config) == set(range(10, 30))  # read while the log holds the spool open

        own_broker.start()
        await eventually(lambda: log.health.ready, timeout_s=20.0)
        # shipped, the segments go: the scenario looks only while no broker listens
        await eventually(lambda: not spooled_auctions(config), timeout_s=5.0)
    finally:
        await log.stop(5)


async def test_a_click_marked_shipped_has_left_the_view_though_its_segment_remains(tmp_path: Path) -> None:
    config = configs.kafka_config(tmp_path, "127.0.0.1:9")  # no broker: the spool alone
    spool = Spool(config.data_dir / config.log.kafka.spool_dir, max_bytes=1 << 20)
    await spool.open()
    try:
        seqs = [await spool.put(Topic.CLICKS, b"k", click(n), (), 0) for n in (1, 2, 3)]
        await spool.mark_shipped(seqs[1])  # a broker acknowledged the first two: it may take them with it
        assert spool.pending == 1
        assert spooled_auctions(config) == {3}
    finally:
        await spool.close()
