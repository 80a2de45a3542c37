"""The clicks an edge's Kafka spool holds now, read from its segment files while the edge runs.

A click answered from the spool was fsync'd there before its 302 went out, and
stays pending there until a broker has acknowledged it to the shipper (which
then writes a SHIPPED marker): while no broker listens, the spool holds every
click the edge answered from it that no broker took. A scenario that looks
before the broker returns therefore knows exactly which answered clicks must
still be shipped, and which a broker acknowledged (directly, or from the
spool) and may have taken with it when killed, without timing either.
"""

from __future__ import annotations

from pathlib import Path

import orjson

from clickbus.config import Config
from clickbus.log.port import Topic
from clickbus.log.spool_family import SUFFIX, family
from clickbus.log.spool_format import DONE, RECORD, SHIPPED, decode_record, read_frames


def spooled_auctions(config: Config) -> set[int]:
    """The auction ids of the clicks every spool of the edge's family has still to ship (whole frames only)."""
    auctions: set[int] = set()
    for directory in family(config.data_dir / config.log.kafka.spool_dir):
        auctions |= _pending_clicks(sorted(directory.glob(f"*{SUFFIX}")))
    return auctions


def _pending_clicks(segments: list[Path]) -> set[int]:
    """Click records not marked shipped or done: a shipped one was acknowledged by a broker, maybe the one killed."""
    clicks: dict[int, int] = {}
    shipped, done = 0, set()
    for segment in segments:
        try:
            raw = segment.read_bytes()
        except FileNotFoundError:  # shipped and dropped since the listing
            continue
        for frame in read_frames(raw):  # a frame still being written is cut short: not yet answered either
            if frame.kind == SHIPPED:
                shipped = max(shipped, frame.seq)
            elif frame.kind == DONE:
                done.add(frame.seq)
            elif frame.kind == RECORD and (record := decode_record(frame.seq, frame.payload)).topic == Topic.CLICKS:
                clicks[frame.seq] = int(orjson.loads(record.value)["auction_id_64"])
    return {auction for seq, auction in clicks.items() if seq > shipped and seq not in done}
