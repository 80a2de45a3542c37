"""The edge's records: built as dict literals on the hot path, they are exactly the record dataclasses' JSON."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from clickbus.edge.client import Client
from clickbus.edge.events import click_record, impression_record
from clickbus.records import ClickRecord, ImpressionRecord, Source
from clickbus.tokens import AdContext, Token

_TEXT = st.text(max_size=80)
_U32 = st.integers(0, 2**32 - 1)
_U64 = st.integers(0, 2**64 - 1)
ADS = st.builds(
    AdContext,
    member_id=_U32,
    auction_id_64=_U64,
    user_id_64=st.one_of(st.just(0), _U64),
    creative_id=_U64,
    landing_url=_TEXT,
    custom_notify_data=_TEXT,
    userdata_json=_TEXT,
    test=st.booleans(),
    pos=st.integers(0, 0xFFFF),
    campaign_id=_U32,
    placement=_TEXT,
    publisher_id=_U32,
    country=_TEXT,
)
TOKENS = st.builds(Token, key_id=st.just("k1"), issued_at=_U32, expires_at=_U32, ad=ADS)
CLIENTS = st.builds(Client, ip=_TEXT, user_agent=_TEXT, referer=_TEXT, device=_TEXT, key=_TEXT)
CALLS = st.fixed_dictionaries(
    {
        "source": st.sampled_from([Source.REDIRECT, Source.BEACON, Source.PIXEL, Source.SERVER]),
        "now": st.floats(0, 2**32, allow_nan=False),
        "user_id": st.one_of(st.just(""), _TEXT),
        "session_id": st.one_of(st.just(""), _TEXT),
        "pos": st.one_of(st.none(), st.integers(0, 0xFFFF)),
    }
)


@given(TOKENS, CLIENTS, CALLS, _TEXT)
def test_a_click_is_its_records_json_and_key(token: Token, client: Client, call: dict[str, Any], landing: str) -> None:
    event = click_record(token, client, landing=landing, **call)
    record = ClickRecord.from_json(event.value)
    assert list(orjson.loads(event.value)) == [
        f.name for f in fields(ClickRecord)
    ]  # every field, in the dataclass's order
    assert event.value == record.to_json()
    assert event.key == record.dedup_key()
    assert (event.record_id, event.reason) == (record.click_id, record.reason)
    assert record.reason == ("expired" if token.expired(call["now"]) else None)


@given(TOKENS, CLIENTS, CALLS)
def test_an_impression_is_its_records_json_and_key(token: Token, client: Client, call: dict[str, Any]) -> None:
    event = impression_record(token, client, **call)
    record = ImpressionRecord.from_json(event.value)
    assert list(orjson.loads(event.value)) == [f.name for f in fields(ImpressionRecord)]
    assert event.value == record.to_json()
    assert event.key == record.dedup_key()
    assert (event.record_id, event.reason) == (record.impression_id, record.reason)
