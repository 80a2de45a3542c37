"""A clickbus under test: edges (`clickbus run`) and `clickbus notifier` as processes on one config.

One edge serves alone (`--no-notifier`) unless asked for more: several edges
share the log, the members and a configured signing key, each with its own
port and data directory (its spool), as the README's scale-out section says.

Bidder stubs run in the caller's event loop; the log is the embedded SQLite
file or a Tansu broker. Reads of the topics go through `open_log(config).read`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from clickbus.config import ENV_DATA_DIR, Config
from clickbus.keystore import encode_key, load_keyring
from clickbus.log.port import Topic
from clickbus.notifier.retry import Parked
from clickbus.tokens import Keyring, new_key
from tests.support.bidder import BidderStub
from tests.support.kafka_broker import TansuBroker
from tests.support.records import recorded
from tests.support.service import Service

# Test-sized Kafka settings, as in tests/log/conftest.py (Tansu 0.6 refuses idempotent producers).
KAFKA_SETTINGS = (
    "idempotence = false\nrequest_timeout_ms = 2000\nconnect_timeout_ms = 2000\nretry_backoff_ms = 100\n"
    "partitions = 3\ngroup_session_timeout_ms = 1000\ngroup_heartbeat_interval_ms = 200\n"
)
FAST_NOTIFIER = {"retry_base_s": 0.1, "retry_max_delay_s": 1.0, "commit_interval_s": 0.05}
SHARED_KEY_ID = "chaos"


def _toml(value: object) -> str:
    return (
        orjson.dumps(value).decode()
        if isinstance(value, str)
        else str(value).lower()
        if isinstance(value, bool)
        else str(value)
    )


class Blackhole:
    """A port that accepts connections into its backlog and never answers: a bidder gone silent."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4096)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/click"

    def close(self) -> None:
        self.sock.close()


class NotifierProcess:
    """`clickbus notifier` on the stack's config, its JSON logs in notifier.err; `data_dir` overrides the config's."""

    def __init__(self, config_path: Path, data_dir: Path | None = None) -> None:
        self.config_path = config_path
        self.stderr_path = config_path.parent / "notifier.err"
        self.env = {**os.environ, ENV_DATA_DIR: str(data_dir)} if data_dir else None
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> NotifierProcess:
        argv = [sys.executable, "-m", "clickbus", "notifier", "--config", str(self.config_path)]
        with self.stderr_path.open("ab") as errors:
            self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=errors, env=self.env)
        return self

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return -9


def _shared_key(path: Path) -> str:
    """A `[tokens]` table naming one signing key, written to `path`."""
    path.write_text(encode_key(new_key()))
    path.chmod(0o600)
    return f'[tokens]\nsigning_key = "{SHARED_KEY_ID}"\n[[tokens.keys]]\nid = "{SHARED_KEY_ID}"\nfile = "{path}"\n'


class Stack:
    """Edge and notifier processes in `directory`; `members` maps member ids to click URIs.

    `edges` > 1 adds edges in `directory/edge2`, ...; `edge_notifier` runs each edge's in-process notifier
    (a supervised child beside them when `edge_workers` > 1).
    """

    def __init__(
        self,
        directory: Path,
        members: Mapping[int, str],
        *,
        broker: TansuBroker | None = None,
        member_settings: Mapping[str, Any] | None = None,
        notifier_settings: Mapping[str, Any] | None = None,
        embedded_settings: Mapping[str, Any] | None = None,
        edges: int = 1,
        edge_notifier: bool = False,
        edge_workers: int = 1,
    ) -> None:
        self.edges = [Service(directory, workers=edge_workers, shutdown_timeout_s=5.0, notifier=edge_notifier)]
        for n in range(2, edges + 1):
            (directory / f"edge{n}").mkdir()
            self.edges.append(Service(directory / f"edge{n}", shutdown_timeout_s=5.0, notifier=edge_notifier))
        self.edge = self.edges[0]
        self.topic_prefix = f"chaos{uuid.uuid4().hex[:8]}"
        notifier = {**FAST_NOTIFIER, **(notifier_settings or {})}
        sections = self._sections(members, broker, member_settings or {}, notifier)
        if embedded_settings:
            sections += "[log.embedded]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in embedded_settings.items())
        if edges > 1:  # the generated key is per data directory: edges behind one balancer share a configured one
            sections += _shared_key(directory / "token.key")
        for edge in self.edges:
            with edge.config_path.open("a") as out:
                out.write(sections)
        self.config: Config = self.edge.config
        self.keyring: Keyring = load_keyring(self.config)  # the shared key, or data_dir/signing.key (created)
        # on Kafka the data directory holds only a spool, which must be one process's: the notifier gets its own
        self.notifier = NotifierProcess(self.edge.config_path, directory / "notifier" if broker else None)
        self.exit_codes: dict[str, int] = {}

    def _sections(
        self,
        members: Mapping[int, str],
        broker: TansuBroker | None,
        member: Mapping[str, Any],
        notifier: Mapping[str, Any],
    ) -> str:
        text = f'[log]\ntopic_prefix = "{self.topic_prefix}"\n'
        if broker is not None:
            text += f'backend = "kafka"\n[log.kafka]\nbootstrap_servers = "{broker.bootstrap}"\n{KAFKA_SETTINGS}'
        text += "[notifier]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in notifier.items())
        for member_id, uri in members.items():
            settings = {"click_uri": uri, "allow_private": True, **member}
            text += f"[members.{member_id}]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in settings.items())
        return text

    def stop_edge(self) -> None:
        """SIGTERM the edges and keep their exit statuses (a clean stop after the chaos is part of passing)."""
        for n, edge in enumerate(self.edges, 1):
            self.exit_codes["edge" if n == 1 else f"edge{n}"] = edge.stop()

    def stop_notifier(self) -> None:
        if self.notifier.process is not None:
            self.exit_codes["notifier"] = self.notifier.stop()

    def stop(self) -> None:
        """Clean up whatever still runs (after a failure)."""
        for edge in self.edges:
            edge.stop()
        self.notifier.stop()

    def errors(self) -> int:
        """Error-level lines in the processes' JSON logs."""
        texts = [edge.logs() for edge in self.edges]
        texts.append(self.notifier.stderr_path.read_text() if self.notifier.stderr_path.exists() else "")
        return sum(text.count('"level":"error"') for text in texts)

    async def records(self, topic: Topic = Topic.CLICKS) -> list[dict[str, Any]]:
        return await recorded(self.config, topic)

    async def dead_letters(self) -> list[str]:
        return [Parked.from_json(orjson.dumps(r)).click.click_id for r in await self.records(Topic.DLQ)]


def deliveries(stubs: list[BidderStub]) -> list[tuple[str, str]]:
    return [(r.webhook_id, r.answered) for stub in stubs for r in stub.received]


async def drain(stack: Stack, stubs: list[BidderStub], timeout_s: float) -> tuple[list[dict[str, Any]], float]:
    """Stop the edge, read every recorded click, and wait for the notifier to settle them all."""
    await asyncio.to_thread(stack.stop_edge)  # the bidder stubs answer in this loop meanwhile
    records = await stack.records()
    return records, await settle(stack, stubs, records, timeout_s)


async def settle(stack: Stack, stubs: list[BidderStub], records: list[dict[str, Any]], timeout_s: float) -> float:
    """Wait until every recorded click was delivered or dead-lettered; returns the seconds it took."""
    wanted = {str(r["click_id"]) for r in records}
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        done = {webhook_id for webhook_id, answer in deliveries(stubs) if answer == "200"}
        if not wanted - done or not wanted - done - set(await stack.dead_letters()):
            break
        await asyncio.sleep(0.5)
    return round(time.monotonic() - started, 1)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0
