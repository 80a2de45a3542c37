"""Fixtures for the log tests: the Tansu broker (see tests/support/kafka_broker.py) and Kafka configurations."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from clickbus.config import Config
from tests.support import configs
from tests.support.kafka_broker import TansuBroker, kafka_broker, own_broker

__all__ = ["kafka_broker", "own_broker"]

KafkaConfigFactory = Callable[..., Config]


@pytest.fixture
def kafka_config(tmp_path: Path) -> KafkaConfigFactory:
    """Build a Kafka configuration for a broker, in this test's temporary directory."""

    def build(broker: TansuBroker, **kafka: object) -> Config:
        return configs.kafka_config(tmp_path, broker.bootstrap, **kafka)

    return build
