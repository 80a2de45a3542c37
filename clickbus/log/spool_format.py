"""The spool's file format: length- and checksum-framed records and markers.

A frame is a 17-byte header (payload length, CRC32 of what follows the CRC,
seq, kind) and its payload. A reader stops at the first frame that is cut
short or fails its checksum: that is how a tail torn by a crash is found.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

RECORD, DONE, SHIPPED = 1, 2, 3
_HEAD = struct.Struct(">IIQB")  # payload length, crc32 of the rest, seq, kind
HEAD_SIZE = _HEAD.size
_LENGTH_CRC = struct.Struct(">II")  # _HEAD in two: payload length and CRC, then the seq and kind the CRC covers
_SEQ_KIND = struct.Struct(">QB")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
MAX_PAYLOAD = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class SpooledRecord:
    """One record waiting in the spool, with where it lies on disk."""

    seq: int
    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class Frame:
    kind: int
    seq: int
    payload: bytes
    end: int


def encode_record(record: SpooledRecord) -> bytes:
    """The RECORD frame for `record`."""
    return record_frame(
        record.seq,
        topic_field(record.topic),
        record.key,
        record.value,
        headers_field(record.headers),
        record.timestamp_ms,
    )


def topic_field(topic: str) -> bytes:
    """A RECORD payload's topic, as `record_frame` takes it (a writer of one topic encodes it once)."""
    raw = topic.encode()
    return _U16.pack(len(raw)) + raw


def headers_field(headers: tuple[tuple[str, bytes], ...]) -> bytes:
    """A RECORD payload's headers, as `record_frame` takes it (every record of a kind has the same ones)."""
    parts = [_U16.pack(len(headers))]
    for name, value in headers:
        raw = name.encode()
        parts += [_U16.pack(len(raw)), raw, _U32.pack(len(value)), value]
    return b"".join(parts)


def record_frame(seq: int, topic: bytes, key: bytes, value: bytes, headers: bytes, timestamp_ms: int) -> bytes:
    """The RECORD frame of a record whose topic and headers are already encoded (`topic_field`, `headers_field`)."""
    size = _U32.pack
    tail = b"".join(
        (
            _SEQ_KIND.pack(seq, RECORD),
            topic,
            size(len(key)),
            key,
            size(len(value)),
            value,
            headers,
            _U64.pack(timestamp_ms),
        )
    )
    return _LENGTH_CRC.pack(len(tail) - _SEQ_KIND.size, zlib.crc32(tail)) + tail


def encode_frame(kind: int, seq: int, payload: bytes = b"") -> bytes:
    tail = _SEQ_KIND.pack(seq, kind) + payload
    return _LENGTH_CRC.pack(len(payload), zlib.crc32(tail)) + tail


class _Payload:
    """Reads the fields of a RECORD payload in order."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.at = 0

    def take(self, size: int) -> bytes:
        out = self.raw[self.at : self.at + size]
        if len(out) != size:
            raise ValueError("record payload too short")
        self.at += size
        return out

    def number(self, fmt: struct.Struct) -> int:
        (value,) = fmt.unpack(self.take(fmt.size))
        return int(value)

    def blob(self, fmt: struct.Struct) -> bytes:
        return self.take(self.number(fmt))


def decode_record(seq: int, payload: bytes) -> SpooledRecord:
    """The record in a RECORD frame's payload; ValueError if it is malformed."""
    p = _Payload(payload)
    topic = p.blob(_U16).decode()
    key, value = p.blob(_U32), p.blob(_U32)
    headers = tuple((p.blob(_U16).decode(), p.blob(_U32)) for _ in range(p.number(_U16)))
    return SpooledRecord(seq, topic, key, value, headers, p.number(_U64))


def read_frames(raw: bytes, start: int = 0) -> Iterator[Frame]:
    """Whole, intact frames from `start`; stops at the first torn or corrupt one."""
    at = start
    while at + _HEAD.size <= len(raw):
        length, crc, seq, kind = _HEAD.unpack_from(raw, at)
        end = at + _HEAD.size + length
        if length > MAX_PAYLOAD or end > len(raw) or zlib.crc32(raw[at + 8 : end]) != crc:
            return
        yield Frame(kind, seq, raw[at + _HEAD.size : end], end)
        at = end
