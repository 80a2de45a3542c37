"""Selecting the Kafka adapter, and the Kafka example configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from clickbus.config import from_mapping, load
from clickbus.errors import ConfigError
from clickbus.log import EmbeddedLog, open_log
from clickbus.log.kafka import KafkaLog

EXAMPLE = Path(__file__).parents[2] / "conf" / "clickbus.kafka.toml"


@pytest.mark.parametrize(
    ("raw", "env", "adapter"),
    [
        ({}, {}, EmbeddedLog),
        ({}, {"CLICKBUS_KAFKA_BOOTSTRAP": "127.0.0.1:9092"}, KafkaLog),
        ({"log": {"backend": "kafka", "kafka": {"bootstrap_servers": "k:9092"}}}, {}, KafkaLog),
    ],
)
def test_open_log_follows_the_configuration(raw: dict[str, object], env: dict[str, str], adapter: type) -> None:
    assert isinstance(open_log(from_mapping(raw, env=env)), adapter)


def test_the_spool_lives_in_the_data_dir_unless_absolute(tmp_path: Path) -> None:
    config = from_mapping({"data_dir": str(tmp_path)}, env={"CLICKBUS_KAFKA_BOOTSTRAP": "127.0.0.1:9092"})
    log = open_log(config)
    assert isinstance(log, KafkaLog) and log.spool.directory == tmp_path / "spool"
    assert log.names.full("clicks") == "clickbus.clicks"


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("spool_max_mb", 0, "log.kafka.spool_max_mb: expected a positive number"),
        ("idempotence", "yes", "log.kafka.idempotence: expected bool"),
        ("request_timeout_ms", -1, "log.kafka.request_timeout_ms: expected a positive number"),
    ],
)
def test_bad_kafka_keys_are_named(key: str, value: object, problem: str) -> None:
    raw = {"log": {"backend": "kafka", "kafka": {"bootstrap_servers": "k:9092", key: value}}}
    with pytest.raises(ConfigError) as error:
        from_mapping(raw, env={})
    assert any(p.startswith(problem) for p in error.value.problems)


def test_the_kafka_example_configuration_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLICKBUS_TOKEN_KEY_K1", "unused-here")
    config = load(EXAMPLE, env={})
    kafka = config.log.kafka
    assert config.log.backend == "kafka" and len(kafka.bootstrap_servers) == 3
    assert (kafka.security_protocol, kafka.replication_factor, kafka.idempotence) == ("SASL_SSL", 3, True)
    assert "change-me" not in repr(config)
