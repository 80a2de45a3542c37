"""One spool per process: writer locks, the family of spool directories, and spools left by processes that are gone."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest

from clickbus.config import Config
from clickbus.creative import Inserter
from clickbus.errors import LogUnavailable
from clickbus.keystore import load_keyring
from clickbus.log import open_log
from clickbus.log.kafka import KafkaLog
from clickbus.log.locks import LOCK_NAME
from clickbus.log.port import Topic
from clickbus.log.spool import Spool
from clickbus.log.spool_family import SUFFIX, family, family_member, has_segments
from clickbus.log.spool_format import RECORD, decode_record, read_frames
from clickbus.logging_setup import ENV_WORKER
from tests.log.conftest import KafkaConfigFactory
from tests.log.kafka_helpers import consume_all
from tests.log.test_kafka_outage import AD, edge_process, referer_number, wait_http
from tests.log.test_kafka_spool import file_size_limit
from tests.support.kafka_broker import TansuBroker
from tests.support.ports import free_port
from tests.support.waiting import eventually

ROOT = str(Path(__file__).resolve().parents[2])
CLICKS = 60

SPOOLER = """
import asyncio, sys
from pathlib import Path
from clickbus.log.spool import Spool

async def main(root, tag, count):
    spool = Spool(Path(root), max_bytes=1 << 30)
    await spool.open()
    print(spool.directory, flush=True)
    sys.stdin.readline()  # every spooler has its spool open before any of them writes
    for i in range(count):
        await spool.put("clicks", tag.encode(), f"{tag}-{i}".encode(), (), i)
    print("written", flush=True)
    sys.stdin.readline()  # hold the spool until told to close it (or killed)
    await spool.close()

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


class Spooler:
    """A process that opens the spool family at `root`, spools `count` records when told, then holds on."""

    def __init__(self, root: Path, tag: str, count: int, worker: int | None = None) -> None:
        env = {**os.environ, "PYTHONPATH": ROOT}
        env.pop(ENV_WORKER, None)
        if worker is not None:
            env[ENV_WORKER] = str(worker)
        argv = [sys.executable, "-c", SPOOLER, str(root), tag, str(count)]
        self.process = subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.directory = Path(self._line())

    def _line(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.readline().decode().strip()

    def _tell(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(b"go\n")
        self.process.stdin.flush()

    def write(self) -> None:
        """Let it spool its records."""
        self._tell()

    def written(self) -> None:
        """Wait until every record it spooled is fsync'd."""
        assert self._line() == "written"

    def finish(self) -> None:
        """Let it close its spool and exit."""
        self._tell()
        assert self.process.wait(30) == 0

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def reap(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()


@contextmanager
def spoolers(root: Path, *specs: tuple[str, int, int | None]) -> Iterator[list[Spooler]]:
    """Start one spooler per (tag, count, worker index), each with its spool open, and reap them all at the end."""
    started: list[Spooler] = []
    try:
        for tag, count, worker in specs:
            started.append(Spooler(root, tag, count, worker))
        yield started
    finally:
        for spooler in started:
            spooler.reap()


def records_on_disk(directory: Path) -> list[bytes]:
    """The value of every record frame in the segments of `directory`, read without the spool's own code."""
    values = []
    for segment in sorted(directory.glob(f"*{SUFFIX}")):
        for frame in read_frames(segment.read_bytes()):
            if frame.kind == RECORD:
                values.append(decode_record(frame.seq, frame.payload).value)
    return values


def spooling(root: Path) -> list[Path]:
    """The spools of the family at `root` that hold records."""
    return [directory for directory in family(root) if records_on_disk(directory)]


def tagged(tag: str, count: int) -> list[bytes]:
    return [f"{tag}-{i}".encode() for i in range(count)]


async def opened(root: Path, *, preferred: int = 0, max_bytes: int = 1 << 30) -> Spool:
    spool = Spool(root, max_bytes=max_bytes, preferred=preferred)
    await spool.open()
    return spool


async def spooled(root: Path, tag: str, count: int, *, preferred: int) -> Path:
    """Spool `count` records in spool `preferred` of the family, close it, and say where they are."""
    spool = await opened(root, preferred=preferred)
    for i in range(count):
        await spool.put("clicks", tag.encode(), f"{tag}-{i}".encode(), (), i)
    await spool.close()
    return spool.directory


async def pending_values(spool: Spool) -> list[bytes]:
    batch, _ = await spool.read(spool.start_cursor(), 100_000)
    return [record.value for record in batch]


# -- one writer per spool ------------------------------------------------------------------


async def test_two_processes_spooling_into_one_configured_directory_both_keep_every_record(tmp_path: Path) -> None:
    """Both used to write the same segment file at their own offsets: half the records were overwritten."""
    root = tmp_path / "spool"
    with spoolers(root, ("a", 50, None), ("b", 50, None)) as (a, b):
        assert {a.directory, b.directory} == {root, family_member(root, 1)}
        for spooler in (a, b):
            spooler.write()
        for spooler in (a, b):
            spooler.written()
        for spooler in (a, b):
            spooler.finish()
    assert records_on_disk(a.directory) == tagged("a", 50)
    assert records_on_disk(b.directory) == tagged("b", 50)


@pytest.mark.parametrize(("worker", "held_before", "expected"), [(0, [], 0), (3, [], 3), (0, [0], 1), (2, [2, 3], 4)])
async def test_a_process_holds_its_worker_index_or_the_next_free_spool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, worker: int, held_before: list[int], expected: int
) -> None:
    root = tmp_path / "spool"
    holders = [await opened(root, preferred=index) for index in held_before]
    monkeypatch.setenv(ENV_WORKER, str(worker))
    spool = Spool(root, max_bytes=1 << 20)
    await spool.open()
    assert spool.directory == family_member(root, expected)
    assert (spool.directory / LOCK_NAME).exists()
    for holder in [*holders, spool]:
        await holder.close()


async def test_a_closed_spool_is_free_for_the_next_process(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    first = await opened(root)
    await first.put("clicks", b"k", b"v", (), 0)
    await first.close()
    again = await opened(root)
    assert again.directory == root and await pending_values(again) == [b"v"] and again.taken_over == 0
    await again.close()


def test_the_family_is_the_directory_and_its_numbered_siblings_only(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    for name in ["spool", "spool-2", "spool-10", "spool-old", "spoolx-1", "other-1"]:
        (tmp_path / name).mkdir()
    (tmp_path / "spool-3").write_text("a file, not a spool")
    assert family(root) == [root, tmp_path / "spool-2", tmp_path / "spool-10"]
    assert family(tmp_path / "absent") == []


# -- spools nobody holds -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("orphan", "opener", "legacy"),
    [
        pytest.param(0, 1, True, id="a spool written before each process had its own (no lock file)"),
        pytest.param(3, 0, False, id="a sibling left by a worker that is gone"),
        pytest.param(1, 5, False, id="a sibling below the opener's own"),
    ],
)
async def test_a_spool_nobody_holds_is_taken_over_at_open(
    tmp_path: Path, orphan: int, opener: int, legacy: bool
) -> None:
    root = tmp_path / "spool"
    left = await spooled(root, "gone", 30, preferred=orphan)
    if legacy:
        (left / LOCK_NAME).unlink()
    spool = await opened(root, preferred=opener)
    assert spool.directory == family_member(root, opener)
    assert spool.taken_over == 30 and spool.pending == 30
    assert await pending_values(spool) == tagged("gone", 30)
    assert not has_segments(left), "the orphan is emptied once its records are durable here"
    await spool.close()
    again = await opened(root, preferred=opener)  # taken over once: a restart finds them here, not twice
    assert await pending_values(again) == tagged("gone", 30) and again.taken_over == 0
    await again.close()


async def test_a_spool_a_live_process_holds_is_left_to_it(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    with spoolers(root, ("live", 10, 2)) as (live,):
        live.write()
        live.written()
        spool = await opened(root)
        assert spool.taken_over == 0 and spool.pending == 0
        await spool.close()
        assert records_on_disk(live.directory) == tagged("live", 10)
        live.kill()
    spool = await opened(root)  # its writer is gone now
    assert spool.taken_over == 10 and await pending_values(spool) == tagged("live", 10)
    await spool.close()


async def test_taking_over_ignores_the_size_limit_rather_than_strand_acknowledged_records(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    await spooled(root, "gone", 20, preferred=1)
    spool = await opened(root, max_bytes=300)
    assert spool.taken_over == 20 and spool.size > 300
    with pytest.raises(LogUnavailable, match="spool full"):
        await spool.put("clicks", b"k", b"new", (), 0)
    await spool.close()


async def test_a_take_over_that_cannot_write_leaves_the_orphan_whole(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    left = await spooled(root, "gone", 20, preferred=2)
    with file_size_limit(200):  # the copy fails past 200 bytes, as on a full disk
        spool = await opened(root)
    assert records_on_disk(left) == tagged("gone", 20), "nothing is marked shipped before its copy is durable"
    assert spool.taken_over == 0
    await spool.close()
    again = await opened(root)
    assert await pending_values(again) == tagged("gone", 20)
    assert not has_segments(left)
    await again.close()


# -- shipping them to Kafka (a real broker) ------------------------------------------------


async def started(config: Config) -> KafkaLog:
    log = open_log(config)
    assert isinstance(log, KafkaLog)
    await log.start()
    return log


async def shipped_values(config: Config) -> list[bytes]:
    return sorted(message.value for message in await consume_all(config, Topic.CLICKS))


async def test_a_restarted_worker_ships_its_predecessors_spool(
    kafka_broker: TansuBroker, kafka_config: KafkaConfigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = kafka_config(kafka_broker)
    root = config.data_dir / config.log.kafka.spool_dir
    with spoolers(root, ("w0", 5, 0), ("w1", 25, 1)) as (w0, w1):
        for spooler in (w0, w1):
            spooler.write()
            spooler.written()
        w1.kill()  # SIGKILL with 25 records spooled: the kernel drops its lock
        monkeypatch.setenv(ENV_WORKER, "1")
        log = await started(config)  # worker 1 again, while worker 0 lives on
        try:
            assert log.spool.directory == w1.directory and log.spool.taken_over == 0
            await eventually(lambda: log.health.ready, timeout_s=20.0)
        finally:
            await log.stop(5)
        assert records_on_disk(w0.directory) == tagged("w0", 5), "a live worker's spool is its own"
    assert await shipped_values(config) == sorted(tagged("w1", 25))


async def test_an_orphaned_sibling_spool_is_shipped(
    kafka_broker: TansuBroker, kafka_config: KafkaConfigFactory
) -> None:
    config = kafka_config(kafka_broker)
    root = config.data_dir / config.log.kafka.spool_dir
    with spoolers(root, ("gone", 40, 3)) as (gone,):
        gone.write()
        gone.written()
        gone.kill()  # and the edge restarts with fewer workers: nobody prefers spool 3 now
    log = await started(config)
    try:
        assert log.spool.directory == root and log.spool.taken_over == 40
        health = log.health
        assert not health.ready and "shipping 40 spooled records" in health.reason
        await eventually(lambda: log.health.ready, timeout_s=20.0)
    finally:
        await log.stop(5)
    assert not has_segments(gone.directory), "emptied at open, once its records were durable in spool 0"
    assert await shipped_values(config) == sorted(tagged("gone", 40))


async def test_concurrent_spool_opens_take_over_an_orphan_once(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    await spooled(root, "gone", 50, preferred=7)
    spools = await asyncio.gather(*(opened(root, preferred=index) for index in range(3)))
    assert sorted(spool.taken_over for spool in spools) == [0, 0, 50]
    for spool in spools:
        await spool.close()


async def test_a_spool_nobody_holds_with_only_shipped_records_is_emptied_not_copied(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    left = await opened(root, preferred=4)
    seqs = [await left.put("clicks", b"k", f"v{i}".encode(), (), i) for i in range(3)]
    await left.mark_shipped(seqs[-1])  # as a crash right after shipping, before the spool was reset
    await left.close()
    assert has_segments(left.directory)
    spool = await opened(root)
    assert spool.taken_over == 0 and spool.pending == 0
    assert not has_segments(left.directory)
    await spool.close()


# -- clickbus run --workers N --------------------------------------------------------------


async def test_the_workers_of_one_service_spool_apart_and_every_click_is_shipped(
    own_broker: TansuBroker, kafka_config: KafkaConfigFactory, tmp_path: Path
) -> None:
    """`clickbus run --workers 2` put both workers on one spool: clicks answered 302 were overwritten."""
    config = kafka_config(own_broker)
    root = config.data_dir / config.log.kafka.spool_dir
    conf = tmp_path / "clickbus.toml"
    conf.write_text(
        f'[log]\ntopic_prefix = "{config.log.topic_prefix}"\n'
        "[log.kafka]\nidempotence = false\nrequest_timeout_ms = 2000\nconnect_timeout_ms = 2000\n"
    )
    keyring = load_keyring(config)  # data_dir/signing.key, which the edge processes then use
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    path = urlsplit(Inserter(keyring, base, ttl_s=3600).click_url(AD)).path
    own_broker.stop()  # every click is spooled, by whichever worker the kernel hands its connection
    service = edge_process(conf, tmp_path, port, own_broker.bootstrap, "--workers", "2", "--no-notifier")
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
            await wait_http(session, f"{base}/healthz", 200)
            sent = 0
            async with asyncio.timeout(30):  # the second worker listens once its log has started
                while sent < CLICKS or len(spooling(root)) < 2:
                    headers = {"Referer": f"https://pub.example/{sent}"}
                    async with session.get(base + path, headers=headers, allow_redirects=False) as response:
                        assert response.status == 302
                    sent += 1
            service.terminate()
            assert service.wait(30) == 0
            assert len(spooling(root)) == 2, "each worker spooled into a spool of its own"
            assert sum(len(records_on_disk(directory)) for directory in family(root)) == sent

            own_broker.start()
            service = edge_process(conf, tmp_path, port, own_broker.bootstrap, "--no-notifier")
            await wait_http(session, f"{base}/readyz", 200)  # one worker now: it took over the other spool
    finally:
        service.terminate()
        service.wait(30)
    messages = await consume_all(config, Topic.CLICKS)
    assert sorted(referer_number(m) for m in messages) == list(range(sent))
