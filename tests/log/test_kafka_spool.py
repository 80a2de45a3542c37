"""The disk spool: framing, torn tails, order, restarts, and a full disk."""

from __future__ import annotations

import contextlib
import resource
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clickbus.errors import LogUnavailable
from clickbus.log.spool import Spool
from clickbus.log.spool_family import SUFFIX
from clickbus.log.spool_format import SpooledRecord, decode_record, encode_record, read_frames

HEADERS = (("kind", b"click"), ("schema", b"1"))
RECORDS = st.builds(
    SpooledRecord,
    seq=st.integers(1, 2**63),
    topic=st.sampled_from(["clicks", "impressions", "dlq"]),
    key=st.binary(max_size=64),
    value=st.binary(max_size=512),
    headers=st.lists(st.tuples(st.text(max_size=8), st.binary(max_size=16)), max_size=3).map(tuple),
    timestamp_ms=st.integers(0, 2**63),
)


@given(RECORDS)
def test_a_record_frame_decodes_to_the_same_record(record: SpooledRecord) -> None:
    (frame,) = read_frames(encode_record(record))
    assert decode_record(frame.seq, frame.payload) == record


@given(st.lists(RECORDS, min_size=1, max_size=5), st.data())
def test_a_cut_anywhere_yields_only_whole_frames(records: list[SpooledRecord], data: st.DataObject) -> None:
    raw = b"".join(encode_record(r) for r in records)
    cut = data.draw(st.integers(0, len(raw)))
    frames = list(read_frames(raw[:cut]))
    assert [decode_record(f.seq, f.payload) for f in frames] == records[: len(frames)]
    assert (frames[-1].end if frames else 0) <= cut


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob(f"*{SUFFIX}"))


async def opened(directory: Path, **options: int) -> Spool:
    spool = Spool(directory, max_bytes=options.pop("max_bytes", 1 << 30), **options)
    await spool.open()
    return spool


async def put(spool: Spool, n: int, start: int = 0) -> list[int]:
    return [await spool.put("clicks", b"k", f"v{i}".encode(), HEADERS, i) for i in range(start, start + n)]


async def pending_values(spool: Spool) -> list[bytes]:
    batch, _ = await spool.read(spool.start_cursor(), 10_000)
    return [record.value for record in batch]


async def test_records_come_back_in_order_with_every_field(tmp_path: Path) -> None:
    spool = await opened(tmp_path)
    seqs = await put(spool, 5)
    assert seqs == sorted(seqs) and len(set(seqs)) == 5
    batch, _ = await spool.read(spool.start_cursor(), 100)
    assert [(r.seq, r.topic, r.key, r.value, r.headers, r.timestamp_ms) for r in batch] == [
        (seq, "clicks", b"k", f"v{i}".encode(), HEADERS, i) for i, seq in enumerate(seqs)
    ]
    assert spool.pending == 5


async def test_concurrent_puts_share_fsyncs_and_keep_call_order(tmp_path: Path) -> None:
    import asyncio

    spool = await opened(tmp_path)
    seqs = await asyncio.gather(*(spool.put("clicks", b"k", f"v{i}".encode(), (), i) for i in range(200)))
    assert list(seqs) == sorted(seqs)
    assert await pending_values(spool) == [f"v{i}".encode() for i in range(200)]


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda raw: raw[:-3], id="torn-last-frame"),
        pytest.param(lambda raw: raw + b"\x00\x00\x00\x09garbage", id="torn-header"),
        pytest.param(lambda raw: raw[:-1] + bytes([raw[-1] ^ 0xFF]), id="bad-checksum"),
    ],
)
async def test_a_torn_tail_is_cut_off_at_open(tmp_path: Path, damage: Callable[[bytes], bytes]) -> None:
    spool = await opened(tmp_path)
    await put(spool, 3)
    await spool.close()
    (segment,) = segments(tmp_path)
    whole = segment.read_bytes()
    segment.write_bytes(damage(whole))

    again = await opened(tmp_path)
    values = await pending_values(again)
    assert values == [b"v0", b"v1", b"v2"][: len(values)] and len(values) >= 2
    assert again.torn_bytes > 0
    assert again.pending == len(values)
    await put(again, 1, start=9)  # appends continue on a frame boundary
    await again.close()
    third = await opened(tmp_path)
    assert await pending_values(third) == [*values, b"v9"]
    assert third.torn_bytes == 0


async def test_shipped_and_done_records_are_not_read_again_after_a_restart(tmp_path: Path) -> None:
    spool = await opened(tmp_path)
    seqs = await put(spool, 6)
    await spool.mark_shipped(seqs[1])
    await spool.mark_done([seqs[3]])
    assert spool.pending == 3
    await spool.close()

    again = await opened(tmp_path)
    assert await pending_values(again) == [b"v2", b"v4", b"v5"]
    assert again.pending == 3
    more = await put(again, 1, start=6)
    assert more[0] > seqs[-1]


async def test_full_segments_are_deleted_once_shipped(tmp_path: Path) -> None:
    spool = await opened(tmp_path, segment_bytes=200)
    seqs = await put(spool, 20)
    assert len(segments(tmp_path)) > 3
    await spool.mark_shipped(seqs[14])
    await spool.close()
    again = await opened(tmp_path)
    assert await pending_values(again) == [f"v{i}".encode() for i in range(15, 20)]
    assert len(segments(tmp_path)) < 4


async def test_reset_removes_every_segment_once_all_is_shipped(tmp_path: Path) -> None:
    spool = await opened(tmp_path)
    seqs = await put(spool, 3)
    await spool.mark_shipped(seqs[-1])
    assert spool.pending == 0
    assert await spool.reset()
    assert segments(tmp_path) == []
    await put(spool, 1)
    assert await pending_values(spool) == [b"v0"]
    assert not await spool.reset(), "a pending record keeps the spool"
    await spool.close()
    again = await opened(tmp_path)
    assert await pending_values(again) == [b"v0"] and again.pending == 1


async def test_the_size_limit_refuses_records_instead_of_losing_them(tmp_path: Path) -> None:
    spool = await opened(tmp_path, max_bytes=300)
    with pytest.raises(LogUnavailable, match="spool full"):
        await put(spool, 50)
    kept = await pending_values(spool)
    assert 0 < len(kept) < 50 and spool.pending == len(kept)


@contextlib.contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """Make writes past `limit` bytes fail with EFBIG, as a full disk makes them fail with ENOSPC."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


async def test_a_failed_write_is_refused_and_cut_so_the_spool_stays_readable(tmp_path: Path) -> None:
    spool = await opened(tmp_path)
    await put(spool, 2)
    with file_size_limit(spool.size + 10), pytest.raises(LogUnavailable, match="spool write failed"):
        await spool.put("clicks", b"k", b"x" * 100, (), 0)
    assert spool.pending == 2
    await put(spool, 1, start=7)
    await spool.close()
    again = await opened(tmp_path)
    assert await pending_values(again) == [b"v0", b"v1", b"v7"]
    assert again.torn_bytes == 0 and again.pending == 3


@pytest.mark.parametrize("chunk", [16, 100, 1 << 22])
async def test_reading_in_windows_across_chunks_returns_each_record_once_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    monkeypatch.setattr("clickbus.log.spool.READ_CHUNK", chunk)
    spool = await opened(tmp_path, segment_bytes=1000)
    big = b"x" * 500  # larger than the smaller chunks: the reader widens its chunk
    values = [big if i % 7 == 3 else f"v{i}".encode() for i in range(40)]
    for i, value in enumerate(values):
        await spool.put("clicks", b"k", value, (), i)
    read: list[bytes] = []
    cursor = spool.start_cursor()
    while True:
        batch, cursor = await spool.read(cursor, 3)
        if not batch:
            break
        read += [r.value for r in batch]
    assert read == values


@pytest.mark.parametrize("shipped_before", [0, 3])
async def test_a_cursor_taken_before_the_segment_is_on_disk_still_finds_the_record(
    tmp_path: Path, shipped_before: int
) -> None:
    """The shipper may take its cursor while a fall-back's record is queued and its segment not yet created.
    Such a cursor pointed past the record's seq, so the shipper skipped it and waited for it forever."""
    spool = await opened(tmp_path)
    if shipped_before:  # an emptied spool, as after "spool shipped; appending to kafka again"
        await spool.mark_shipped((await put(spool, shipped_before))[-1])
        assert await spool.reset()
    seq, written = spool.enqueue("clicks", b"k", b"late", HEADERS, 0)
    cursor = spool.start_cursor()
    await written
    batch, _ = await spool.read(cursor, 10)
    assert [(r.seq, r.value) for r in batch] == [(seq, b"late")]
