"""The log: durable topics behind one port, with an embedded and a Kafka adapter."""

from __future__ import annotations

from clickbus.config import Config
from clickbus.log.embedded import HOUR_S, MB, EmbeddedLog
from clickbus.log.port import Consumer, Entry, Health, Log, Topic
from clickbus.log.retention import Retention

__all__ = ["Consumer", "EmbeddedLog", "Entry", "Health", "Log", "Topic", "open_log"]


def open_log(config: Config) -> Log:
    """The log adapter the configuration selects (not yet started)."""
    if config.log.backend == "kafka":
        from clickbus.log.kafka import KafkaLog  # aiokafka is loaded only when Kafka is used

        kafka = config.log.kafka
        return KafkaLog(kafka, spool_dir=config.data_dir / kafka.spool_dir, prefix=config.log.topic_prefix)
    embedded = config.log.embedded
    return EmbeddedLog(
        config.log_path,
        max_batch=embedded.max_batch,
        segment_bytes=embedded.segment_mb * MB,
        retention=Retention(embedded.retention_hours * HOUR_S, embedded.retention_mb * MB),
        retention_check_s=embedded.retention_check_s,
    )
