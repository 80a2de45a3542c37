"""aiokafka clients built from the configuration, and the time bounds aiokafka lacks.

aiokafka can wait forever on a dead broker: an idempotent producer never
expires a batch, so `stop()` (which flushes) and awaiting a delivery can hang
(aiokafka issues 1101 and 1013). Everything here that talks to a broker is
bounded by a timeout, and `stop_producer` forces the producer down when its
own stop does not finish in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped]
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # type: ignore[import-untyped]
from aiokafka.errors import (  # type: ignore[import-untyped]
    KafkaError,
    KafkaTimeoutError,
    TopicAlreadyExistsError,
    UnknownError,
)
from aiokafka.helpers import create_ssl_context  # type: ignore[import-untyped]

from clickbus.compat.aiokafka import abandon_pending
from clickbus.config import KafkaConfig

logger = logging.getLogger(__name__)

TOPIC_EXISTS = TopicAlreadyExistsError.errno


def connection_options(config: KafkaConfig) -> dict[str, Any]:
    """Bootstrap, client id, timeouts and security settings shared by every client."""
    options: dict[str, Any] = {
        "bootstrap_servers": [str(hp) for hp in config.bootstrap_servers],
        "client_id": config.client_id,
        "request_timeout_ms": config.request_timeout_ms,
        "retry_backoff_ms": config.retry_backoff_ms,
        "security_protocol": config.security_protocol,
    }
    if config.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = _ssl_context(config)
    if config.security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = config.sasl_mechanism or "PLAIN"
        options["sasl_plain_username"] = config.sasl_username
        options["sasl_plain_password"] = config.sasl_password.value.decode() if config.sasl_password else None
    return options


def _ssl_context(config: KafkaConfig) -> ssl.SSLContext:
    context: ssl.SSLContext = create_ssl_context(
        cafile=config.ssl_cafile, certfile=config.ssl_certfile, keyfile=config.ssl_keyfile
    )
    return context


def new_producer(config: KafkaConfig) -> Any:
    """A producer with acks from all in-sync replicas, batching by `linger_ms`."""
    return AIOKafkaProducer(
        **connection_options(config),
        acks="all",
        enable_idempotence=config.idempotence,
        linger_ms=config.linger_ms,
        max_batch_size=config.max_batch_bytes,
    )


class IdempotenceRefused(KafkaError):  # type: ignore[misc]
    """The broker answered, but would not give the idempotent producer an id."""

    retriable = False

    def __str__(self) -> str:
        return (
            "kafka refused the idempotent producer (aiokafka asks for a producer id with InitProducerId v0 only, "
            "and this broker does not grant it); set log.kafka.idempotence = false for this broker"
        )


async def start_producer(config: KafkaConfig, timeout: float) -> Any:
    """A started producer; `IdempotenceRefused` if the broker answers but refuses the idempotent producer."""
    producer = new_producer(config)
    try:
        await start_bounded(producer, timeout)
    except KafkaError as exc:
        if config.idempotence and isinstance(exc.__cause__, UnknownError):
            raise IdempotenceRefused() from exc
        raise
    return producer


async def start_bounded(client: Any, timeout: float) -> None:
    """Start an aiokafka client within `timeout`; on failure close it and raise `KafkaError`."""
    try:
        await asyncio.wait_for(client.start(), timeout)
    except (KafkaError, OSError, TimeoutError) as exc:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.stop() if hasattr(client, "stop") else client.close(), 1.0)
        raise KafkaError(f"cannot connect: {exc!r}") from exc


async def stop_producer(producer: Any, timeout: float) -> None:
    """Flush and stop `producer` within `timeout`, failing what it still holds if the broker is gone."""
    if await _within(producer.stop(), timeout):
        return
    logger.warning("kafka producer did not stop within %.1fs; closing it (pending sends fail)", timeout)
    # aiokafka#1101: stop() waits for batches that a dead broker never takes. Fail them and close.
    await _within(abandon_pending(producer, KafkaTimeoutError("producer closed with the broker unreachable"), 1.0), 1.5)
    await _within(producer.client.close(), 1.0)


async def _within(step: Awaitable[Any], timeout: float) -> bool:
    """Run `step` for at most `timeout`: whether it ended cleanly. Its own failure (a cancelled sender
    task re-raises its cancellation in `close()`, for one) stays here and never cancels the caller."""
    task = asyncio.ensure_future(step)
    await asyncio.wait({task}, timeout=timeout)
    task.add_done_callback(_observe)
    if not task.done():
        task.cancel()
        return False
    return not task.cancelled() and task.exception() is None


def _observe(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


async def ensure_topics(config: KafkaConfig, names: Sequence[str], timeout: float) -> None:
    """Create whichever of `names` are missing, with the configured partitions and replication."""
    admin = AIOKafkaAdminClient(**connection_options(config))
    try:
        await asyncio.wait_for(admin.start(), timeout)
        existing = set(await asyncio.wait_for(admin.list_topics(), timeout))
        missing = [n for n in names if n not in existing]
        if missing:
            new = [NewTopic(n, config.partitions, config.replication_factor) for n in missing]
            response = await asyncio.wait_for(admin.create_topics(new), timeout)
            _check_created(response)
            logger.info("created kafka topics %s", ", ".join(missing))
    except TimeoutError as exc:
        raise KafkaError(f"topic check timed out after {timeout:.1f}s") from exc
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(admin.close(), 1.0)


def _check_created(response: Any) -> None:
    for topic, code, *rest in response.topic_errors:
        if code not in (0, TOPIC_EXISTS):
            message = rest[0] if rest else ""
            raise KafkaError(f"cannot create topic {topic}: error {code} {message or ''}".strip())
