"""Fixtures for the log tests: the Tansu broker (see tests/support/kafka_broker.py) and Kafka configurations."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import pytest

from clickbus.config import Config
from tests.support import configs
from tests.support.kafka_broker import TansuBroker, kafka_broker, own_broker

__all__ = ["kafka_broker", "own_broker"]


class KafkaConfigFactory(Protocol):
    """The `kafka_config` fixture: a configuration for `broker`, Kafka settings overridable by keyword."""

    def __call__(self, broker: TansuBroker, **kafka: object) -> Config: ...


@pytest.fixture
def kafka_config(tmp_path: Path) -> KafkaConfigFactory:
    """Build a Kafka configuration for a broker, in this test's temporary directory."""

    def build(broker: TansuBroker, **kafka: object) -> Config:
        return configs.kafka_config(tmp_path, broker.bootstrap, **kafka)

    return build
