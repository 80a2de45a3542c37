"""Golden bytes: what the edge writes for fixed inputs stays byte for byte what it wrote before issue 20's work.

The records (their JSON values, dedup keys and headers), the tokens, the click ids and the embedded log's
frames on disk are built here at a fixed time, with fixed keys and a fixed stream in place of the operating
system's randomness, and compared with `tests/golden/record_bytes.json`, captured from the code before the
hot path was made cheaper. Regenerate it only for a deliberate format change:
`.venv/bin/python -m tests.test_record_bytes > tests/golden/record_bytes.json`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from clickbus import ids
from clickbus.edge import events
from clickbus.edge.client import Client
from clickbus.log.embedded import EmbeddedLog
from clickbus.log.port import Topic
from clickbus.log.segment import partition_dir, segment_path
from clickbus.log.spool_format import SpooledRecord, encode_record
from clickbus.records import ClickRecord, ImpressionRecord, Source, address_key, device_key, truncate_ip
from clickbus.tokens import AdContext, Keyring

GOLDEN = Path(__file__).parent / "golden" / "record_bytes.json"
NOW = 1_764_700_000.25  # a fixed click time (2025-12-02 18:26:40 UTC)
ISSUED = 1_764_690_000
SECRET = bytes(range(32))
KEYRING = Keyring({"k1": bytes(range(1, 33)), "k-old": bytes(range(2, 34))}, "k1")
OLD_KEYRING = Keyring({"k-old": bytes(range(2, 34))}, "k-old")
LONG_ID = "user-" + "x" * 80  # past MAX_KEY_ID_CHARS: hashed into the dedup key
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"

ADS = {
    "plain": AdContext(
        member_id=958,
        auction_id_64=7_123_456_789_012_345_678,
        user_id_64=2_987_654_321,
        creative_id=4242,
        landing_url="https://shop.example/landing?x=1&y=%C3%A9",
        custom_notify_data="cnd",
        userdata_json='{"segment":"a"}',
        pos=3,
    ),
    "dimensions": AdContext(
        member_id=1,
        auction_id_64=1,
        creative_id=2,
        landing_url="https://shop.example/",
        test=True,
        redirect_hosts=("a.example", "b.example"),
        campaign_id=77,
        placement="homepage-top ü",
        publisher_id=300_000,
        country="DE",
    ),
    "no auction": AdContext(member_id=5, creative_id=9, landing_url="https://x.example/p?q=\u00e9"),
    "no user": AdContext(member_id=6, auction_id_64=2**64 - 1, landing_url="https://y.example/"),
}

CLIENTS = {
    "v4": ("203.0.113.77", UA, "https://pub.example/article?id=1"),
    "v6": ("2001:db8:1234:5678::1", "curl/8.0", ""),
    "mapped": ("::ffff:198.51.100.7", "caf\udce9 bot", "https://r\u00e9f.example/\ud800"),
    "none": (None, "", ""),
}


def client(name: str) -> Client:
    address, user_agent, referer = CLIENTS[name]
    return Client(
        ip=truncate_ip(address),
        user_agent=user_agent,
        referer=referer,
        device=device_key(user_agent),
        key=address_key(SECRET, address),
    )


def token_texts() -> dict[str, str]:
    texts = {name: KEYRING.sign(ad, ttl_s=3600, now=ISSUED) for name, ad in ADS.items()}
    texts["expired"] = KEYRING.sign(ADS["plain"], ttl_s=60, now=ISSUED)
    texts["old key"] = OLD_KEYRING.sign(ADS["dimensions"], ttl_s=10**6, now=ISSUED)
    return texts


class _Stream:
    """Stands for `os.urandom`: the bytes of a fixed stream, in order, however many each call asks for."""

    def __init__(self) -> None:
        self._blocks = self._generate()
        self._left = b""

    @staticmethod
    def _generate() -> Iterator[bytes]:
        n = 0
        while True:
            yield hashlib.sha256(n.to_bytes(8)).digest()
            n += 1

    def __call__(self, size: int) -> bytes:
        while len(self._left) < size:
            self._left += next(self._blocks)
        out, self._left = self._left[:size], self._left[size:]
        return out


def _fixed_ids() -> Callable[[], str]:
    counter = iter(range(1, 10**6))
    return lambda: f"0190f0e2-7c3b-7d2a-9b1e-{next(counter):012x}"


def _event(event: events.Event) -> dict[str, Any]:
    return {
        "topic": event.topic,
        "id": event.record_id,
        "key": event.key.decode(),
        "value": event.value.decode(),
        "headers": [[name, value.decode()] for name, value in event.headers],
        "source": event.source,
        "reason": event.reason,
    }


def record_cases() -> dict[str, Any]:
    """Every event the hot paths build for the tokens and clients above (click ids from `_fixed_ids`)."""
    out: dict[str, Any] = {}
    for token_name, text in token_texts().items():
        token = KEYRING.verify(text)
        for client_name in CLIENTS:
            c = client(client_name)
            name = f"{token_name}/{client_name}"
            out[f"redirect {name}"] = _event(
                events.click_record(token, c, source=Source.REDIRECT, landing=token.ad.landing_url, now=NOW)
            )
            out[f"pixel {name}"] = _event(events.impression_record(token, c, source=Source.PIXEL, now=NOW))
            out[f"beacon click {name}"] = _event(
                events.click_record(
                    token, c, source=Source.BEACON, landing="https://z.example/", now=NOW, user_id="u1", pos=7
                )
            )
            out[f"beacon impression {name}"] = _event(
                events.impression_record(token, c, source=Source.BEACON, now=NOW, session_id=LONG_ID, pos=0)
            )
            out[f"beacon long user {name}"] = _event(
                events.click_record(
                    token, c, source=Source.BEACON, landing="https://z.example/", now=NOW, user_id=LONG_ID
                )
            )
    server = ClickRecord(
        click_id="0190f0e2-7c3b-7d2a-9b1e-3f4a5b6c7d8e",
        timestamp="2026-11-23 10:00:00",
        auction_id_64=0,
        member_id=958,
        user_id_64=0,
        referer_url="",
        user_agent="server",
        userdata_json="",
        custom_notify_data="",
        test=False,
        source=Source.SERVER,
        creative_id=4242,
        landing_url="",
        client_ip="203.0.113.0",
        device="mobile",
        location="FR",
    )
    out["server click"] = _event(events.event_of(server))
    return out


def id_cases() -> list[str]:
    """Click ids at fixed times (new milliseconds, many in one, a clock that went back) from a fixed stream."""
    times = [1_700_000_000_000_000_000 + step * 1_000_000 for step in (0, 0, 0, 1, 1, 5, 3, 6)] * 3
    times += [1_700_000_000_100_000_000] * 5000  # past the 12-bit counter: borrows the next milliseconds
    minted = [ids.uuid7(now_ns=t) for t in times]
    return minted[:40] + minted[-40:] + [hashlib.sha256("".join(minted).encode()).hexdigest()]


def frame_cases() -> dict[str, str]:
    """The embedded log's frames, alone and as a partition writes them to its segment file."""
    records = [
        SpooledRecord(0, "clicks", b"958/x:1/abc/1.2", b'{"n":0}', ClickRecord.HEADERS, 1_700_000_000_000),
        SpooledRecord(2**40, "impressions", b"", b"", (), 0),
        SpooledRecord(7, "clicks", b"k" * 300, "\u00e9".encode() * 200, (("a", b""), ("b", b"\x00\xff")), 2**63 - 1),
    ]
    out = {f"frame {i}": encode_record(r).hex() for i, r in enumerate(records)}

    async def write_segment(directory: Path) -> bytes:
        log = EmbeddedLog(directory / "log", partition=0)
        await log.start()
        try:
            await asyncio.gather(
                *(
                    log.append_at(
                        Topic.CLICKS, f"key{i}".encode(), b'{"n":%d}' % i, ClickRecord.HEADERS, 1_700_000_000_000 + i
                    )
                    for i in range(50)
                )
            )
            await log.append_at(Topic.CLICKS, b"last", b"{}", (), 5)
        finally:
            await log.stop(5)
        return segment_path(partition_dir(directory / "log", Topic.CLICKS, 0), 0).read_bytes()

    with tempfile.TemporaryDirectory() as tmp:
        out["segment"] = asyncio.run(write_segment(Path(tmp))).hex()
    return out


def build(patch: Callable[[object, str, object], None]) -> dict[str, Any]:
    """Every golden case; `patch(target, name, value)` fixes the click ids and the randomness."""
    patch(events, "uuid7", _fixed_ids())
    records = record_cases()
    patch(os, "urandom", _Stream())
    return {
        "tokens": token_texts(),
        "records": records,
        "ids": id_cases(),
        "frames": frame_cases(),
    }


def fresh_ids(mp: pytest.MonkeyPatch) -> None:
    """The id module's state as in a new process (its clock, counter and unused random bytes are global)."""
    mp.setattr(ids, "_last_ms", 0)
    mp.setattr(ids, "_counter", 0)
    mp.setattr(ids, "_pool", b"")
    mp.setattr(ids, "_at", 0)


@pytest.fixture(scope="module")
def built() -> Iterator[dict[str, Any]]:
    with pytest.MonkeyPatch.context() as mp:
        fresh_ids(mp)
        yield build(mp.setattr)


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(GOLDEN.read_text())
    return loaded


@pytest.mark.parametrize("part", ["tokens", "ids", "frames"])
def test_bytes_are_as_captured(built: dict[str, Any], golden: dict[str, Any], part: str) -> None:
    assert built[part] == golden[part]


def test_records_are_as_captured(built: dict[str, Any], golden: dict[str, Any]) -> None:
    assert built["records"].keys() == golden["records"].keys()
    for name, event in golden["records"].items():
        assert built["records"][name] == event, name


def test_the_records_parse_back(built: dict[str, Any]) -> None:
    """The golden values are the records themselves: each decodes into its dataclass and encodes to the same bytes."""
    for name, event in built["records"].items():
        value = event["value"].encode()
        kind = ClickRecord if event["topic"] == Topic.CLICKS else ImpressionRecord
        assert kind.from_json(value).to_json() == value, name
        assert orjson.loads(value)["valid"] == (event["reason"] is None)


if __name__ == "__main__":
    with pytest.MonkeyPatch.context() as mp:
        fresh_ids(mp)
        print(json.dumps(build(mp.setattr), indent=1, ensure_ascii=True))
