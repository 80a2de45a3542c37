"""Test configurations: every one is built here from its tables, on a data directory, ignoring the environment."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from clickbus.config import Config, from_mapping

# Fast notifier timings, so that retries and commits happen within a test's patience.
FAST_NOTIFIER = {"retry_base_s": 0.05, "retry_max_delay_s": 0.2, "commit_interval_s": 0.05}


def build_config(data_dir: Path, **tables: Any) -> Config:
    """A configuration of `tables` (edge=..., members=..., ...) with its data under `data_dir`."""
    return from_mapping({"data_dir": str(data_dir), **tables}, env={})


def edge_config(tmp_path: Path, **edge: Any) -> Config:
    """The edge with `edge` settings, its data under `tmp_path / "var"`."""
    return build_config(tmp_path / "var", edge=edge)


def notifier_config(data_dir: Path, members: Mapping[int, Mapping[str, Any]], **notifier: Any) -> Config:
    """Members from `members` (bidders on loopback allowed), fast notifier settings overridable by keyword."""
    return build_config(
        data_dir,
        members={str(k): {"allow_private": True, **v} for k, v in members.items()},
        notifier={**FAST_NOTIFIER, **notifier},
    )


def kafka_config(data_dir: Path, bootstrap: str, **kafka: Any) -> Config:
    """A log on the Kafka broker at `bootstrap`, with a topic prefix of its own and test-sized timeouts."""
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
    log = {"backend": "kafka", "topic_prefix": f"t{uuid.uuid4().hex[:12]}", "kafka": settings}
    return build_config(data_dir, edge={"public_url": "http://edge.test"}, log=log)
