"""Tokens: round trip, tamper resistance, key rotation, expiry and size."""

from __future__ import annotations

import base64
import dataclasses
import hmac
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clickbus import tokens
from clickbus.errors import TokenError
from clickbus.tokens import MAX_TOKEN_CHARS, AdContext, Keyring, Mac, Token, new_key

KEYS = {"k1": new_key(), "k2": new_key()}
SIGNER = Keyring(KEYS, "k1")
U64 = st.integers(0, 2**64 - 1)
TEXT = st.text(max_size=200)
ADS = st.builds(
    AdContext,
    member_id=st.integers(0, 2**32 - 1),
    auction_id_64=U64,
    user_id_64=U64,
    creative_id=U64,
    landing_url=TEXT,
    custom_notify_data=TEXT,
    userdata_json=TEXT,
    test=st.booleans(),
    pos=st.integers(0, 0xFFFF),
    redirect_hosts=st.lists(st.from_regex(r"[a-z0-9.-]{1,20}", fullmatch=True), max_size=4).map(tuple),
    campaign_id=st.integers(0, 2**32 - 1),
    placement=st.text(max_size=64),
    publisher_id=st.integers(0, 2**32 - 1),
    country=st.sampled_from(["", "FR", "US"]),
)
URL_SAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@given(ADS)
def test_round_trip(ad: AdContext) -> None:
    token = SIGNER.verify(SIGNER.sign(ad, ttl_s=60, now=1_800_000_000))
    assert token.ad == ad
    assert (token.key_id, token.issued_at, token.expires_at) == ("k1", 1_800_000_000, 1_800_000_060)


@given(ADS)
def test_tokens_are_url_safe(ad: AdContext) -> None:
    assert set(SIGNER.sign(ad, ttl_s=60)) <= set(URL_SAFE)


@given(ADS, st.data())
def test_every_single_character_change_is_rejected(ad: AdContext, data: st.DataObject) -> None:
    text = SIGNER.sign(ad, ttl_s=60)
    at = data.draw(st.integers(0, len(text) - 1))
    other = data.draw(st.sampled_from(URL_SAFE.replace(text[at], "")))
    with pytest.raises(TokenError):
        SIGNER.verify(text[:at] + other + text[at + 1 :])


@given(ADS, st.data())
def test_every_byte_flip_is_rejected(ad: AdContext, data: st.DataObject) -> None:
    import base64

    text = SIGNER.sign(ad, ttl_s=60)
    raw = bytearray(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    at = data.draw(st.integers(0, len(raw) - 1))
    raw[at] ^= data.draw(st.integers(1, 255))
    tampered = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    with pytest.raises(TokenError):
        SIGNER.verify(tampered)


@given(ADS, st.data())
def test_truncation_and_extension_are_rejected(ad: AdContext, data: st.DataObject) -> None:
    text = SIGNER.sign(ad, ttl_s=60)
    cut = data.draw(st.integers(0, len(text) - 1))
    extra = data.draw(st.text(alphabet=URL_SAFE, min_size=1, max_size=8))
    for bad in (text[:cut], text + extra, extra + text):
        with pytest.raises(TokenError):
            SIGNER.verify(bad)


@pytest.mark.parametrize("text", ["", "A", "====", "AQ", "not a token!", "\x00" * 10, "A" * (MAX_TOKEN_CHARS + 1)])
def test_garbage_is_rejected(text: str) -> None:
    with pytest.raises(TokenError):
        SIGNER.verify(text)


def test_other_keys_verify_during_rotation() -> None:
    old = Keyring(KEYS, "k2").sign(AdContext(member_id=1), ttl_s=60)
    assert SIGNER.verify(old).key_id == "k2"


def test_retired_key_is_rejected() -> None:
    old = Keyring(KEYS, "k2").sign(AdContext(member_id=1), ttl_s=60)
    rotated = Keyring({"k1": KEYS["k1"]}, "k1")
    with pytest.raises(TokenError, match="retired"):
        rotated.verify(old)


def test_same_key_id_other_material_is_rejected() -> None:
    forged = Keyring({"k1": new_key()}, "k1").sign(AdContext(member_id=1), ttl_s=60)
    with pytest.raises(TokenError, match="signature"):
        SIGNER.verify(forged)


def test_expiry_is_honoured() -> None:
    token = SIGNER.verify(SIGNER.sign(AdContext(member_id=1), ttl_s=60, now=1_000))
    assert not token.expired(now=1_059)
    assert token.expired(now=1_060)


def test_token_for_100_char_landing_is_under_300_chars() -> None:
    landing = "https://shop.example/" + "p" * (100 - len("https://shop.example/"))
    ad = AdContext(
        member_id=2**32 - 1,
        auction_id_64=2**64 - 1,
        user_id_64=2**64 - 1,
        creative_id=2**64 - 1,
        landing_url=landing,
        custom_notify_data="bid-4711",
        test=True,
        pos=3,
        redirect_hosts=("shop.example",),
    )
    assert len(landing) == 100
    assert len(SIGNER.sign(ad, ttl_s=86400)) < 300


# Minted by the code before reporting dimensions existed (4309b9d), under key bytes(range(32)), at 1_800_000_000.
BEFORE_DIMENSIONS = (
    "AQJrMWtJ0gBrSyOACWaDOXYjS4EAAAANAAAAAAAAAAAAAAAAAAAABQAAABVodHRwczovL3Nob3AuZXhhbXBsZS8AAAxzaG9wLmV4YW1wbGWs4oj-"
    "dooIscO-MTSDRkhF"
)
DIMENSIONS = {"campaign_id": 123456, "publisher_id": 789, "country": "FR", "placement": "header_banner"}


def test_tokens_minted_before_dimensions_still_verify_with_none() -> None:
    ad = Keyring({"k1": bytes(range(32))}, "k1").verify(BEFORE_DIMENSIONS).ad
    assert (ad.member_id, ad.creative_id, ad.landing_url) == (13, 5, "https://shop.example/")
    assert (ad.campaign_id, ad.placement, ad.publisher_id, ad.country) == (0, "", 0, "")


def test_dimensions_cost_30_characters_and_none_cost_nothing() -> None:
    keyring = Keyring({"k1": bytes(range(32))}, "k1")
    base = AdContext(
        member_id=13,
        auction_id_64=677373076784237441,
        creative_id=5,
        landing_url="https://shop.example/",
        redirect_hosts=("shop.example",),
    )
    plain = keyring.sign(base, ttl_s=86400, now=1_800_000_000)
    assert plain == BEFORE_DIMENSIONS  # without dimensions, byte for byte the old format
    with_dimensions = keyring.sign(AdContext(**{**_fields(base), **DIMENSIONS}), ttl_s=86400, now=1_800_000_000)
    assert len(with_dimensions) - len(plain) == 30  # 22 bytes: 3 + 2 varint, 1 + 2 country, 1 + 13 placement


def _fields(ad: AdContext) -> dict[str, Any]:
    return {name: getattr(ad, name) for name in AdContext.__dataclass_fields__}


@pytest.mark.parametrize(
    ("field", "value"),
    [("member_id", 2**32), ("auction_id_64", -1), ("pos", 70000), ("campaign_id", 2**32), ("publisher_id", -1)],
)
def test_out_of_range_values_are_refused_when_signing(field: str, value: int) -> None:
    fields: dict[str, Any] = {"member_id": 1, field: value}
    with pytest.raises(ValueError, match=field):
        SIGNER.sign(AdContext(**fields), ttl_s=60)


@given(st.binary(max_size=200), st.binary(max_size=300))
def test_mac_is_hmac_sha256(key: bytes, message: bytes) -> None:
    assert Mac(key).digest(message) == hmac.digest(key, message, "sha256")


def _respelled(token: str) -> list[str]:
    """Other spellings of the same bytes: standard alphabet, padding, spare bits of the last character set."""
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    standard = base64.b64encode(raw).decode()
    last = URL_SAFE.index(token[-1])
    spare = {2: 0x0F, 3: 0x03}[len(token) % 4]
    return [
        standard.rstrip("="),
        token + "=" * (-len(token) % 4),
        token[:-1] + URL_SAFE[last | spare],
        token[:-1] + URL_SAFE[last | 1],
    ]


@pytest.mark.parametrize("spare", [2, 3])
def test_other_spellings_of_a_token_are_refused(spare: int) -> None:
    """Only the canonical spelling verifies (checked by reading the text, not by encoding the bytes again)."""
    ads = (AdContext(member_id=1, landing_url="https://a.example/?" + "~" * n) for n in range(4))
    tokens = (SIGNER.sign(ad, ttl_s=60) for ad in ads)
    token = next(t for t in tokens if len(t) % 4 == spare)
    for spelling in _respelled(token):
        if spelling != token:
            with pytest.raises(TokenError, match="base64url"):
                SIGNER.verify(spelling)


def test_verification_builds_what_the_constructors_build() -> None:
    """`_positional` sets every slot, in the dataclass's order: equal (and hashed) as the constructor's, never short."""
    values = (1, 2, 3, 4, "https://l.example/", "n", "{}", True, 5, ("h.example",), 6, "top", 7, "DE")
    built, made = tokens._new_ad(*values), AdContext(*values)
    assert built == made and hash(built) == hash(made) and repr(built) == repr(made)
    assert tokens._new_token("k", 1, 2, built) == Token("k", 1, 2, made)
    with pytest.raises(ValueError):
        tokens._new_ad(*values[:-1])
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.member_id = 9  # type: ignore[misc]


@pytest.mark.parametrize("length", [21, 127, 128, 129, 300, 1000])
def test_landings_of_every_length_class_round_trip(length: int) -> None:
    """A landing's length is a varint: one byte below 128, more above (a merge once broke the longer ones)."""
    ad = AdContext(member_id=1, auction_id_64=2, landing_url="https://shop.example/" + "é" * (length // 2))
    ad = dataclasses.replace(ad, landing_url=ad.landing_url.encode()[: max(length, 21)].decode("utf-8", "ignore"))
    assert SIGNER.verify(SIGNER.sign(ad, ttl_s=60)).ad == ad
