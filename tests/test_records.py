"""Records: the Xandr click_request, IP truncation, ids."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, fields
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from clickbus.ids import uuid7, uuid7_ms
from clickbus.records import ClickRecord, ImpressionRecord, truncate_ip, xandr_timestamp


@pytest.mark.parametrize(
    ("address", "truncated"),
    [
        ("192.0.2.77", "192.0.2.0"),
        ("10.1.2.255", "10.1.2.0"),
        ("2001:db8:1234:5678::1", "2001:db8:1234::"),
        ("::ffff:198.51.100.7", "198.51.100.0"),
        ("999.1.1.1", ""),
        ("not an ip", ""),
        ("", ""),
        (None, ""),
    ],
)
def test_truncate_ip(address: str | None, truncated: str) -> None:
    assert truncate_ip(address) == truncated


@given(st.ip_addresses(v=4))
def test_ipv4_fast_path_agrees_with_ipaddress(address: object) -> None:
    import ipaddress

    expected = str(ipaddress.ip_network(f"{address}/24", strict=False).network_address)
    assert truncate_ip(str(address)) == expected


def test_xandr_timestamp_format() -> None:
    assert xandr_timestamp(1228169940.9) == "2008-12-01 22:19:00"


def test_uuid7_is_ordered_unique_and_carries_time() -> None:
    ids = [uuid7(now_ns=1_700_000_000_000_000_000) for _ in range(5000)]
    assert len(set(ids)) == 5000 and ids == sorted(ids)
    assert all(i[14] == "7" and i[19] in "89ab" for i in ids)
    assert uuid7_ms(uuid7(now_ns=1_800_000_000_123_000_000)) >= 1_800_000_000_123


def test_click_request_is_exactly_the_xandr_body() -> None:
    record = ClickRecord(
        click_id=uuid7(),
        timestamp="2008-12-01 22:19:00",
        auction_id_64=677373076784237441,
        member_id=13,
        user_id_64=2987961585469200312,
        referer_url="sports.yahoo.com",
        user_agent="Mozilla/5.0",
        userdata_json='{"segments":[2]}',
        custom_notify_data="",
        test=False,
        source="redirect",
        creative_id=1,
        landing_url="https://x.example/",
        client_ip="192.0.2.0",
        device="abc",
    )
    assert record.click_request() == {
        "click_request": {
            "timestamp": "2008-12-01 22:19:00",
            "auction_id_64": 677373076784237441,
            "member_id": 13,
            "user_id_64": 2987961585469200312,
            "referer_url": "sports.yahoo.com",
            "user_agent": "Mozilla/5.0",
            "userdata_json": '{"segments":[2]}',
            "custom_notify_data": "",
            "test": False,
        }
    }
    assert ClickRecord.from_json(record.to_json()) == record
    assert record.dedup_key() == b"13/2987961585469200312/abc/1"


def _values(record: ClickRecord | ImpressionRecord) -> dict[str, Any]:
    return {f.name: getattr(record, f.name) for f in fields(record)}


_TEXT = st.text(max_size=50)
_INT = st.integers(0, 2**64 - 1)
_REASONS = st.sampled_from([None, "expired", "bot"])


@given(st.builds(ClickRecord, auction_id_64=_INT, user_id_64=_INT, reason=_REASONS, referer_url=_TEXT))
def test_click_encode_is_to_json_byte_for_byte(record: ClickRecord) -> None:
    assert _outcome(lambda: ClickRecord.encode(**_values(record))) == _outcome(record.to_json)


@given(st.builds(ImpressionRecord, auction_id_64=_INT, reason=_REASONS, user_agent=_TEXT))
def test_impression_encode_is_to_json_byte_for_byte(record: ImpressionRecord) -> None:
    assert _outcome(lambda: ImpressionRecord.encode(**_values(record))) == _outcome(record.to_json)


def _outcome(serialize: Callable[[], bytes]) -> bytes | type[Exception]:
    """The JSON, or the kind of error (text with lone surrogates is no JSON either way)."""
    try:
        return serialize()
    except orjson.JSONEncodeError as exc:
        return type(exc)


def test_encode_leaves_defaults_at_their_default() -> None:
    record = ImpressionRecord.from_json(
        ImpressionRecord.encode(**{name: 0 for name in _REQUIRED_IMPRESSION_FIELDS})  # every required field, only
    )
    assert (record.pos, record.valid, record.reason, record.user_id) == (0, True, None, "")


_REQUIRED_IMPRESSION_FIELDS = [f.name for f in fields(ImpressionRecord) if f.default is MISSING]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda values: values.pop("client_ip"), "missing: \\['client_ip'\\]"),
        (lambda values: values.update(clicked_at="x"), "unknown .* \\['clicked_at'\\]"),
    ],
)
def test_encode_refuses_missing_and_unknown_fields(change: Callable[[dict[str, Any]], object], message: str) -> None:
    values = {name: 0 for name in _REQUIRED_IMPRESSION_FIELDS}
    change(values)
    with pytest.raises(TypeError, match=message):
        ImpressionRecord.encode(**values)
