"""Records: the Xandr click_request, IP truncation, ids."""

from __future__ import annotations

import dataclasses
from dataclasses import fields
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from clickbus.ids import uuid7, uuid7_ms
from clickbus.records import (
    ClickRecord,
    ImpressionRecord,
    ad_key,
    address_key,
    dedup_key,
    truncate_ip,
    xandr_timestamp,
)
from clickbus.tokens import AdContext, Keyring, Token
from tests.notifier.factory import click


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
            "test": False,
        }
    }
    assert ClickRecord.from_json(record.to_json()) == record
    assert record.dedup_key() == b"13/x:2987961585469200312/abc/677373076784237441.1"  # no ad_key: auction.creative


def _click(**changes: Any) -> ClickRecord:
    """A beacon click by user u1 on ad 5.1 from one address: each dedup clause changes one thing."""
    fields: dict[str, Any] = {
        "click_id": uuid7(),
        "timestamp": "2008-12-01 22:19:00",
        "auction_id_64": 5,
        "member_id": 13,
        "user_id_64": 0,
        "referer_url": "",
        "user_agent": "Mozilla/5.0",
        "userdata_json": "",
        "custom_notify_data": "",
        "test": False,
        "source": "beacon",
        "creative_id": 1,
        "landing_url": "https://x.example/",
        "client_ip": "192.0.2.0",
        "device": "dev-a",
        "ad_key": "5.1",
        "client_key": "addr-1",
    }
    return ClickRecord(**{**fields, **changes})


# (what the second click changes, relative to the first, and whether it is then the same key)
DEDUP_CLAUSES: list[tuple[str, dict[str, Any], dict[str, Any], bool]] = [
    ("true double click: only the click id differs", {}, {}, True),
    ("the ad is the insertion: another auction", {}, {"auction_id_64": 6, "ad_key": "6.1"}, False),
    ("the ad is the insertion: another token without auction id", {"ad_key": "tA.0"}, {"ad_key": "tB.0"}, False),
    ("the ad: another creative in one auction", {}, {"creative_id": 2, "ad_key": "5.2"}, False),
    ("the device is the user agent", {}, {"device": "dev-b"}, False),
    ("another member", {}, {"member_id": 14}, False),
    ("user_id wins over user_id_64", {"user_id": "u1", "user_id_64": 9}, {"user_id": "u2", "user_id_64": 9}, False),
    ("same user_id, other user_id_64", {"user_id": "u", "user_id_64": 9}, {"user_id": "u", "user_id_64": 8}, True),
    ("no user_id: user_id_64 names the user", {"user_id_64": 9}, {"user_id_64": 8}, False),
    ("user_id_64 wins over session", {"user_id_64": 9, "session_id": "a"}, {"user_id_64": 9, "session_id": "b"}, True),
    ("no user: the session names the user", {"session_id": "s1"}, {"session_id": "s2"}, False),
    ("the session wins over the address", {"session_id": "s1"}, {"session_id": "s1", "client_key": "addr-2"}, True),
    ("no session: the full address, not the /24", {}, {"client_key": "addr-2"}, False),
    ("same full address, same /24", {}, {}, True),
    ("a user_id is not a session of the same text", {"user_id": "x"}, {"session_id": "x"}, False),
    ("long user ids enter hashed, still per user", {"user_id": "a" * 65}, {"user_id": "a" * 64 + "b"}, False),
    ("a long user id twice", {"user_id": "a" * 1024}, {"user_id": "a" * 1024}, True),
]


@pytest.mark.parametrize(("first", "second", "same"), [c[1:] for c in DEDUP_CLAUSES], ids=[c[0] for c in DEDUP_CLAUSES])
def test_dedup_key_clauses(first: dict[str, Any], second: dict[str, Any], same: bool) -> None:
    assert (_click(**first).dedup_key() == _click(**second).dedup_key()) is same


def test_impressions_follow_the_same_rule() -> None:
    click = _click(user_id="u1")
    shared = {f.name: getattr(click, f.name) for f in dataclasses.fields(ImpressionRecord) if hasattr(click, f.name)}
    impression = ImpressionRecord(**{**shared, "impression_id": "i-1"})
    assert impression.dedup_key() == click.dedup_key()
    assert dataclasses.replace(impression, client_key="addr-2").dedup_key() == impression.dedup_key()  # user wins
    assert dataclasses.replace(impression, ad_key="6.1").dedup_key() != impression.dedup_key()


def test_records_without_user_or_ad_stand_alone() -> None:
    """Nothing names the user or the ad (records from before the rule): never a shared default."""
    legacy = {"client_key": "", "ad_key": "", "auction_id_64": 0}
    assert _click(**legacy).dedup_key() != _click(**legacy).dedup_key()
    assert _click(ad_key="").dedup_key() == _click(ad_key="").dedup_key()  # the auction still names the ad


def test_dedup_keys_stay_small() -> None:
    assert len(_click(user_id="u" * 1024, session_id="s" * 1024).dedup_key()) < 100


def test_server_clicks_stand_alone() -> None:
    assert _click(source="server").dedup_key() != _click(source="server").dedup_key()


KEYRING = Keyring({"k1": b"k" * 32}, "k1")


def test_ad_key_names_one_insertion() -> None:
    with_auction = KEYRING.verify(KEYRING.sign(AdContext(member_id=13, auction_id_64=5, creative_id=1), ttl_s=60))
    assert ad_key(with_auction) == "5.1"
    no_ids = AdContext(member_id=13, landing_url="https://a.example/")
    first, second = (KEYRING.verify(KEYRING.sign(no_ids, ttl_s=60, now=now)) for now in (1000, 1001))
    other_landing = dataclasses.replace(no_ids, landing_url="https://b.example/")
    other_ad = KEYRING.verify(KEYRING.sign(other_landing, ttl_s=60, now=1000))
    assert len({ad_key(first), ad_key(second), ad_key(other_ad)}) == 3
    assert ad_key(first) == ad_key(Token(first.key_id, first.issued_at, first.expires_at, first.ad))
    assert ad_key(first).startswith("t") and ad_key(first).endswith(".0")  # never the shared "0.0"


def test_address_key_is_keyed_full_and_opaque() -> None:
    secret = b"s" * 32
    keys = {address_key(secret, a) for a in ("192.0.2.7", "192.0.2.8", "2001:db8::1", "2001:db8::2")}
    assert len(keys) == 4  # the full address, not the /24 or /48
    assert address_key(secret, "::ffff:192.0.2.7") == address_key(secret, "192.0.2.7")
    assert address_key(b"t" * 32, "192.0.2.7") != address_key(secret, "192.0.2.7")
    assert "192" not in address_key(secret, "192.0.2.7") and len(address_key(secret, "192.0.2.7")) == 24
    assert address_key(secret, None) == address_key(secret, "not an ip") == ""


ALWAYS = ["timestamp", "auction_id_64", "member_id", "user_id_64", "referer_url", "user_agent"]


@pytest.mark.parametrize(
    ("userdata", "notify", "fields"),
    [
        ('{"segments":[2]}', "", [*ALWAYS, "userdata_json", "test"]),  # the reference's example
        ("", "", [*ALWAYS, "test"]),
        ("", "bid=1", [*ALWAYS, "custom_notify_data", "test"]),
        ("{}", "bid=1", [*ALWAYS, "userdata_json", "custom_notify_data", "test"]),
    ],
)
def test_optional_click_request_fields_only_when_given(userdata: str, notify: str, fields: list[str]) -> None:
    body = _click(userdata_json=userdata, custom_notify_data=notify).click_request()["click_request"]
    assert list(body) == fields
    assert list(orjson.loads(orjson.dumps({"click_request": body}))["click_request"]) == fields


def _values(record: ClickRecord | ImpressionRecord) -> dict[str, Any]:
    return {f.name: getattr(record, f.name) for f in fields(record)}


_TEXT = st.text(max_size=50)
_INT = st.integers(0, 2**64 - 1)
_REASONS = st.sampled_from([None, "expired", "bot"])


@given(st.builds(ClickRecord, reason=_REASONS, user_id=_TEXT, session_id=_TEXT, client_key=_TEXT, ad_key=_TEXT))
def test_dedup_key_of_values_is_the_records(record: ClickRecord) -> None:
    """The edge keys a record by its values in a dict, the notifier by the record: the same key."""
    values = _values(record)
    assert dedup_key(values.__getitem__, record.click_id) == record.dedup_key()


@given(st.permutations([f.name for f in fields(ClickRecord)]), st.booleans())
def test_a_record_reads_back_the_same_whatever_its_key_order(order: list[str], extra: bool) -> None:
    """`from_mapping` builds positionally only when the keys are the fields in order; any other object by name."""
    record = click(13)
    written = orjson.loads(record.to_json())
    assert list(written) == [f.name for f in fields(ClickRecord)]  # what the positional path relies on
    shuffled = {name: written[name] for name in order}
    if extra:
        shuffled["from_a_newer_version"] = 1
    assert ClickRecord.from_mapping(written) == ClickRecord.from_mapping(shuffled) == record
    assert ClickRecord.from_json(record.to_json()) == record


def test_a_record_missing_its_defaults_or_a_required_field() -> None:
    written = orjson.loads(click(13).to_json())
    older = {k: v for k, v in written.items() if k not in {"country", "publisher_id", "ad_key"}}
    assert ClickRecord.from_mapping(older).country == ""  # written before those fields: their defaults
    del written["member_id"]
    with pytest.raises(TypeError):
        ClickRecord.from_mapping(written)
