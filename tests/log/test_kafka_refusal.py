"""A broker that refuses the idempotent producer is named once, then rarely: not at every retry of the shipper."""

from __future__ import annotations

import logging

import pytest
from pytest_aiohttp import AiohttpClient

from clickbus.edge import create_app
from clickbus.edge.appkeys import LOG
from clickbus.log.kafka import KafkaLog
from clickbus.log.metered import MeteredLog
from clickbus.log.rarely import Rarely
from clickbus.tokens import Keyring, new_key
from tests.log.conftest import KafkaConfigFactory
from tests.support.kafka_broker import TansuBroker
from tests.support.waiting import eventually


def test_rarely_counts_repeats_and_says_them_once_per_interval() -> None:
    now = [0.0]
    rarely = Rarely(every_s=600, clock=lambda: now[0])
    rarely.said()
    assert [rarely.repeat() for _ in range(3)] == [None, None, None]
    now[0] = 600.0
    assert rarely.repeat() == 4  # the three before and this one
    now[0] = 900.0
    assert rarely.repeat() is None
    now[0] = 1200.0
    assert rarely.repeat() == 2


async def test_the_refusal_is_said_once_while_the_shipper_keeps_retrying(
    aiohttp_client: AiohttpClient,
    kafka_broker: TansuBroker,
    kafka_config: KafkaConfigFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)  # the level `clickbus run` logs at: the shipper's retries said it every 5 s
    config = kafka_config(kafka_broker, idempotence=True, retry_backoff_ms=20)  # Tansu 0.6 refuses InitProducerId v0
    app = create_app(config, keyring=Keyring({"k1": new_key()}, "k1"))
    client = await aiohttp_client(app)
    assert (await client.get("/readyz")).status == 503  # spooling: the shipper keeps trying the broker
    metered = app[LOG]
    assert isinstance(metered, MeteredLog) and isinstance(metered.inner, KafkaLog)
    refusals = metered.inner._refusals  # counts the refusals it does not say
    await eventually(lambda: refusals._repeats >= 4, timeout_s=20)
    said = [r for r in caplog.records if "refused the idempotent producer" in r.getMessage()]
    assert len(said) == 1 and said[0].levelname == "ERROR"
