"""A throwaway PostgreSQL cluster for the tests, started as the Kafka broker is: by the suite itself.

PostgreSQL refuses to run as root, and the suite runs as root here: the cluster belongs to `nobody`
(initdb and pg_ctl run under `setpriv`), lives in a temporary directory, and listens only on a Unix
socket there. Debian's `postgresql` package provides the binaries (`make test` installs it where
missing); without them the PostgreSQL tests skip, saying why.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from clickbus.reports.postgres import PostgresStore
from tests.support.ports import free_port

BIN_DIRS = (Path("/usr/lib/postgresql/15/bin"), *sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True))
NOBODY = 65534
START_TIMEOUT_S = 60
_databases = itertools.count()


def binaries() -> Path | None:
    """The directory holding initdb and pg_ctl, if PostgreSQL is installed."""
    return next((d for d in BIN_DIRS if (d / "initdb").exists() and (d / "pg_ctl").exists()), None)


class PostgresCluster:
    """One cluster on a Unix socket; `dsn(db)` names a database in it."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="clickbus-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.running = False

    def _as_owner(self, *argv: str) -> list[str]:
        if os.geteuid() != 0:
            return list(argv)
        return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv]

    def _run(self, *argv: str) -> None:
        subprocess.run(self._as_owner(*argv), check=True, capture_output=True, cwd=self.root, timeout=START_TIMEOUT_S)

    def init(self) -> PostgresCluster:
        if os.geteuid() == 0:
            os.chown(self.root, NOBODY, NOBODY)
        self._run(str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", "clickbus", "--auth=trust", "-E", "UTF8")
        return self

    def start(self) -> None:
        options = f"-k {self.root} -c listen_addresses='' -p {self.port} -F"
        self._run(
            str(self.bin_dir / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.root / "log"),
            "-w",
            "start",
        )
        self.running = True

    def stop(self) -> None:
        if self.running:
            self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
            self.running = False

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://clickbus@/{database}?host={self.root}&port={self.port}"

    def new_database(self) -> str:
        """A fresh, empty database's DSN (each test gets its own)."""
        name = f"t{os.getpid()}_{next(_databases)}"
        self._run(str(self.bin_dir / "createdb"), "-h", str(self.root), "-p", str(self.port), "-U", "clickbus", name)
        return self.dsn(name)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """A running cluster for the whole session."""
    bin_dir = binaries()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (Debian's postgresql package; `make test` installs it as root)")
    cluster = PostgresCluster(bin_dir).init()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.remove()


async def postgres_store(cluster: PostgresCluster) -> PostgresStore:
    """A store on a fresh database of `cluster` (not started)."""
    return PostgresStore(cluster.new_database())
