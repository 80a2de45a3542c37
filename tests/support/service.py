"""A clickbus service in a subprocess (`clickbus run`) on a free port, for the tests that need real processes."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from clickbus import config as configuration
from clickbus.config import Config
from tests.support.ports import free_port

START_TIMEOUT_S = 20.0


def write_config(
    directory: Path,
    port: int,
    *,
    admin_port: int,
    shutdown_timeout_s: float = 5.0,
    access_log: bool = False,
    extra: str = "",
) -> Path:
    """The service's configuration; `extra` is TOML appended inside the `[edge]` table (more edge keys, then tables)."""
    path = directory / "clickbus.toml"
    path.write_text(
        f'data_dir = "{directory / "var"}"\n'
        "[edge]\n"
        f'listen = "127.0.0.1:{port}"\n'
        f'admin_listen = "127.0.0.1:{admin_port}"\n'
        f'public_url = "http://127.0.0.1:{port}"\n'
        f"shutdown_timeout_s = {shutdown_timeout_s}\n"
        f"access_log = {'true' if access_log else 'false'}\n" + extra
    )
    return path


class Service:
    """`clickbus run` with its stderr (JSON logs) in a file."""

    def __init__(
        self,
        directory: Path,
        *,
        workers: int = 1,
        port: int | None = None,
        notifier: bool = False,
        shutdown_timeout_s: float = 5.0,
        extra: str = "",
    ) -> None:
        """`notifier=False` serves the edge alone (`--no-notifier`): these tests are about the edge's processes."""
        self.directory = directory
        self.notifier = notifier
        self.port = port or free_port()
        self.admin_port = free_port()  # every service its own: SO_REUSEPORT would share a fixed one between services
        self.config_path = write_config(
            directory, self.port, admin_port=self.admin_port, shutdown_timeout_s=shutdown_timeout_s, extra=extra
        )
        self.workers = workers
        self.process: subprocess.Popen[bytes] | None = None
        self.stderr_path = directory / "stderr.log"
        self.listening_before = 0

    @property
    def config(self) -> Config:
        return configuration.load(self.config_path, env={})

    @property
    def url(self) -> str:
        """The public listener."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        """The internal listener: insertion, metrics, OpenAPI."""
        return f"http://127.0.0.1:{self.admin_port}"

    def start(self, *, ready: bool = True) -> Service:
        """Start and wait until ready, or (`ready=False`: a data_dir it cannot write) only until it listens."""
        self.listening_before = self.listening()
        argv = [sys.executable, "-m", "clickbus", "run", "--config", str(self.config_path)]
        argv += ["--workers", str(self.workers)] + ([] if self.notifier else ["--no-notifier"])
        with self.stderr_path.open("ab") as err:
            self.process = subprocess.Popen(argv, stderr=err, stdout=subprocess.DEVNULL)
        if ready:
            self.wait_ready()
        else:
            self.wait_listening()
        return self

    def wait_listening(self) -> None:
        """Wait until every worker of this start listens, ready or not."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while self.listening() < self.listening_before + self.workers:
            assert self.process is not None and self.process.poll() is None, self.logs()
            assert time.monotonic() < deadline, f"service not listening in {START_TIMEOUT_S}s:\n{self.logs()}"
            time.sleep(0.05)

    def listening(self) -> int:
        """How many worker processes have started listening since this service's log began."""
        return self.logs().count('"msg":"listening"')

    def wait_ready(self, listening: int | None = None) -> None:
        """Wait until /readyz answers 200 and `listening` workers (all of this start's) are listening."""
        wanted = self.listening_before + self.workers if listening is None else listening
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process is not None and self.process.poll() is None, self.logs()
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1) as response:
                    if response.status == 200 and self.listening() >= wanted:
                        return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.05)
        raise AssertionError(f"service not ready in {START_TIMEOUT_S}s:\n{self.logs()}")

    def signal(self, signum: int = signal.SIGTERM) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout: float = 20.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self) -> int:
        """SIGTERM and wait; kill if it does not stop."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.signal()
        try:
            return self.wait()
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def logs(self) -> str:
        return self.stderr_path.read_text() if self.stderr_path.exists() else ""
