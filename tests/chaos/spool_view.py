"""The clicks an edge's Kafka spool holds now, read from its segment files while the edge runs.

A click answered from the spool was fsync'd there before its 302 went out, and
stays there until the shipper has moved it to a broker: while no broker
listens, the spool holds every click the edge answered from it since it fell
back. A scenario that looks before the broker returns therefore knows exactly
which answered clicks were spooled, and which were acknowledged by the broker
it killed, without timing either.
"""

from __future__ import annotations

from pathlib import Path

import orjson

from clickbus.config import Config
from clickbus.log.port import Topic
from clickbus.log.spool_family import SUFFIX, family
from clickbus.log.spool_format import RECORD, decode_record, read_frames


def spooled_auctions(config: Config) -> set[int]:
    """The auction ids of the click records in every spool of the edge's family (whole frames only)."""
    auctions: set[int] = set()
    for directory in family(config.data_dir / config.log.kafka.spool_dir):
        for segment in directory.glob(f"*{SUFFIX}"):
            auctions |= _clicks_in(segment)
    return auctions


def _clicks_in(segment: Path) -> set[int]:
    try:
        raw = segment.read_bytes()
    except FileNotFoundError:  # shipped and dropped since the listing
        return set()
    found = set()
    for frame in read_frames(raw):  # a frame still being written is cut short: not yet answered either
        if frame.kind == RECORD and (record := decode_record(frame.seq, frame.payload)).topic == Topic.CLICKS:
            found.add(int(orjson.loads(record.value)["auction_id_64"]))
    return found
