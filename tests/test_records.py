"""Records: the Xandr click_request, IP truncation, ids."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clickbus.ids import uuid7, uuid7_ms
from clickbus.records import ClickRecord, truncate_ip, xandr_timestamp


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
