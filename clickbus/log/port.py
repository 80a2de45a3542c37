"""The log port: durable, append-only topics with consumer groups.

Two adapters implement it: `EmbeddedLog` (SQLite, the default) and
`KafkaLog` (aiokafka). Callers use short topic names (`Topic.CLICKS`); each
adapter maps them to its own storage names (`clickbus.clicks` on Kafka).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

HEADER_KIND = "kind"
HEADER_SCHEMA = "schema"

Headers = Sequence[tuple[str, bytes]]
TopicPartition = tuple[str, int]
AssignCallback = Callable[[Sequence[TopicPartition]], Awaitable[None]]


class Topic(StrEnum):
    CLICKS = "clicks"
    IMPRESSIONS = "impressions"
    DELIVERIES = "deliveries"
    DLQ = "dlq"
    RETRY = "retry"  # the notifier's parked deliveries, each with its attempt number and due time
    VERDICTS = "verdicts"  # the notifier's `valid` verdicts, for reports (invalid ones are on DELIVERIES)


@dataclass(frozen=True, slots=True)
class Entry:
    """One record read back from the log."""

    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int

    def header(self, name: str) -> bytes | None:
        return next((v for k, v in self.headers if k == name), None)


@dataclass(frozen=True, slots=True)
class Health:
    """Whether the log accepts writes (`reason` says why not); `warnings`: what an operator should know even so."""

    ready: bool
    reason: str = "ok"
    warnings: tuple[str, ...] = ()


class Consumer(Protocol):
    """A member of a consumer group; commits say what has been fully processed."""

    async def start(self) -> None: ...

    async def stop(self, timeout: float) -> None: ...

    async def fetch(self, *, max_records: int, timeout_s: float) -> list[Entry]:
        """Next records after the current position; empty after `timeout_s` with none."""
        ...

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Record, per (topic, partition), the next offset to read after a restart."""
        ...


class Log(Protocol):
    """Durable topics. `append` returns only once the record is durable."""

    async def start(self) -> None: ...

    async def stop(self, timeout: float) -> None: ...

    @property
    def health(self) -> Health: ...

    async def append(self, topic: str, key: bytes, value: bytes, headers: Headers = ()) -> None:
        """Durably append one record; raise `LogUnavailable` if that cannot be done."""
        ...

    def read(self, topic: str, *, from_beginning: bool, follow: bool) -> AsyncIterator[Entry]:
        """Records of `topic` without a group (for `clickbus tail`)."""
        ...

    def consumer(self, topics: Sequence[str], group: str, *, on_assign: AssignCallback | None = None) -> Consumer:
        """A group member over `topics`, resuming from the group's committed offsets."""
        ...
