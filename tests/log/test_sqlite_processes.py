"""The embedded log with several writer processes on one file (as `clickbus run --workers N` has)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

WRITER = """
import asyncio, sys
from pathlib import Path
from clickbus.log import EmbeddedLog, Topic

async def main(path, tag, count):
    log = EmbeddedLog(Path(path))
    await log.start()
    await asyncio.gather(*(log.append(Topic.CLICKS, b"k", f"{tag}-{i}".encode()) for i in range(count)))
    await log.stop(10)

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


@pytest.mark.slow
def test_processes_append_to_one_file_without_losing_any(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"  # a fresh file: the processes also race to create it
    count = 300
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), f"p{n}", str(count)]) for n in range(4)]
    try:
        assert [w.wait(60) for w in writers] == [0, 0, 0, 0]
    finally:
        for writer in writers:  # a failed writer's siblings may wait forever
            if writer.poll() is None:
                writer.kill()
                writer.wait()
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT offset, value FROM topic_clicks ORDER BY offset").fetchall()
    values = {value.decode() for _, value in rows}
    assert values == {f"p{n}-{i}" for n in range(4) for i in range(count)}
    assert [offset for offset, _ in rows] == list(range(1, 4 * count + 1))
