"""Fixtures for the log tests: the Tansu broker (see tests/support/kafka_broker.py) and Kafka configurations."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from clickbus.config import Config, from_mapping
from tests.support.kafka_broker import TansuBroker, kafka_broker, own_broker

__all__ = ["kafka_broker", "own_broker"]

KafkaConfigFactory = Callable[..., Config]


def kafka_mapping(data_dir: Path, bootstrap: str, **kafka: object) -> dict[str, object]:
    """A configuration on `bootstrap` with a topic prefix of its own and test-sized timeouts."""
    settings = {
        "bootstrap_servers": bootstrap,
        "idempotence": False,  # Tansu 0.6 refuses InitProducerId v0, the only version aiokafka sends
        "request_timeout_ms": 2000,
        "connect_timeout_ms": 2000,
        "retry_backoff_ms": 100,
        "partitions": 3,
        "group_session_timeout_ms": 1000,  # Tansu holds a join for about a session timeout
        "group_heartbeat_interval_ms": 200,
        **kafka,
    }
    return {
        "data_dir": str(data_dir),
        "edge": {"public_url": "http://edge.test"},
        "log": {"backend": "kafka", "topic_prefix": f"t{uuid.uuid4().hex[:12]}", "kafka": settings},
    }


@pytest.fixture
def kafka_config(tmp_path: Path) -> KafkaConfigFactory:
    """Build a Kafka configuration for a broker, in this test's temporary directory."""

    def build(broker: TansuBroker, **kafka: object) -> Config:
        return from_mapping(kafka_mapping(tmp_path, broker.bootstrap, **kafka), env={})

    return build
