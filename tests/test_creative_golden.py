"""Insertion's output, byte for byte, for fixed inputs, key and clock: speed work must not change a byte.

`tests/golden/insertion.json` was written by the insertion code before it was sped up (#20):
`.venv/bin/python -m tests.test_creative_golden` rewrites it, for a change meant to alter the output.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import pytest

from bench.insertion import AD as BANNER_AD
from bench.insertion import MARKUP as BANNER
from clickbus.creative import Inserter
from clickbus.errors import InsertRequestError
from clickbus.tokens import AdContext, Keyring

GOLDEN = Path(__file__).parent / "golden" / "insertion.json"
NOW = 1_796_300_000.25  # 2026-12-03, with a fraction the token's whole seconds drop
KEYRING = Keyring({"old": bytes(range(32)), "k7": bytes(range(100, 132))}, "k7")
INSERTER = Inserter(KEYRING, "https://clk.example/", ttl_s=86400)
PRIVATE_OK = Inserter(KEYRING, "https://clk.example", ttl_s=3600, allow_private_landings=True)

SHOP = AdContext(member_id=13, auction_id_64=677373076784237441, user_id_64=42, landing_url="https://shop.example/")
FULL = AdContext(
    member_id=4294967295,
    auction_id_64=2**64 - 1,
    user_id_64=7,
    creative_id=99,
    landing_url="https://Shop.Example:8443/a/b?x=1&y=%20#frag",
    custom_notify_data="bid=2.10&cur=EUR",
    userdata_json='{"seg":[1,2,3],"n":"ü"}',
    test=True,
    pos=3,
    redirect_hosts=("shop.example", "cdn.shop.example"),
    campaign_id=123456,
    placement="homepage-top",
    publisher_id=77,
    country="DE",
)
IDN = AdContext(member_id=2, landing_url="https://bücher.example/straße?q=é")
NONE = AdContext(member_id=1)
EVERY_MACRO = (
    '<a href="${CLICK_URL}">d</a><a href="${CLICK_URL}https://other.example/p?a=1&amp;b=2">o</a>'
    "<a href='${CLICK_URL}https://other.example/p?a=1&amp;b=2'>again</a>"
    "clickTag=${CLICK_URL_ENC}&tag2=${CLICK_URL_ENC_ENC}|${IMPRESSION_URL}|${CACHEBUSTER}|${CACHEBUSTER}"
    "|${AUCTION_ID}|${FOO}|${click_url}|$CLICK_URL|${CLICK_URL"
)
ANCHORS = (
    '<a class="x" href="https://shop.example/item?id=1&amp;c=2">a</a>'
    "<a href='http://plain.example/'>b</a><A HREF=\"HTTPS://UP.example/\">u</A>"
    '<a href="/relative">c</a><img src="https://cdn.example/i.png">'
    '<a title="x>y" href="https://t.example/">t</a><a data-href="https://no.example/">n</a>'
    '<a href="https://clk.example/ck/ALREADY">w</a><a href="https://shop.example/item?id=1&amp;c=2">same</a>'
    '<a href="${CLICK_URL}https://macro.example/">m</a><a href="https://unclosed.example/'
)

# (name, inserter, markup, ad, wrap_links)
CASES: list[tuple[str, Inserter, str, AdContext, bool]] = [
    ("bench banner", INSERTER, BANNER, BANNER_AD, False),
    ("bench banner, wrap_links", INSERTER, BANNER, BANNER_AD, True),
    ("every macro", INSERTER, EVERY_MACRO, SHOP, False),
    ("every macro, full context", INSERTER, EVERY_MACRO, FULL, False),
    ("every macro, IDN landing", INSERTER, EVERY_MACRO + "${CLICK_URL}https://bücher.example/ö", IDN, False),
    ("anchors, wrap_links", INSERTER, ANCHORS, SHOP, True),
    ("anchors, no wrap", INSERTER, ANCHORS, SHOP, False),
    ("empty markup", INSERTER, "", SHOP, False),
    ("no default landing", INSERTER, "${IMPRESSION_URL} ${CACHEBUSTER}", NONE, False),
    ("open anchors", INSERTER, "<a " * 40, SHOP, True),
    ("unclosed quotes", INSERTER, '<a href="' * 40, SHOP, True),
    ("many links", INSERTER, "".join(f'<a href="https://x.example/{i}">' for i in range(40)), FULL, True),
    (
        "click macro edge cases",
        INSERTER,
        "$$${CLICK_URL}&#1; ${CLICK_URL}https://a.example/${IMPRESSION_URL}x ${CLICK_URL}https://a.example/\u00e9 "
        '${CACHEBUSTER}$ {CLICK_URL} ${CLICK_URL}"https://b.example/" ${CLICK_URL}\u3000 ${AUCTION_ID}$',
        SHOP,
        False,
    ),
    (
        "non-ASCII markup",
        INSERTER,
        "<p>Gr\u00f6\u00dfe \u20ac \U0001f600</p>${CLICK_URL}https://shop.example/\u00fc ${IMPRESSION_URL}"
        " ${CLICK_URL_ENC}",
        IDN,
        False,
    ),
    (
        "refused click macros",
        INSERTER,
        "${CLICK_URL}&amp;x ${CLICK_URL}https://ok.example/&#x202e;x ${CLICK_URL}javascript:1 ${CLICK_URL}javascript:1"
        " ${CLICK_URL}&#1; ${CLICK_URL_ENC_ENC}",
        SHOP,
        False,
    ),
    ("private allowed", PRIVATE_OK, "${CLICK_URL}http://127.0.0.1:8000/x ${CLICK_URL}", SHOP, False),
    ("private landing", INSERTER, "${CLICK_URL}", AdContext(member_id=1, landing_url="http://10.0.0.1/"), False),
    (
        "refused landings",
        INSERTER,
        "${CLICK_URL}javascript:x ${CLICK_URL}https://a@b.example/ ${CLICK_URL}https://a.example/\u202egnp"
        " ${CLICK_URL}https://shop\u3164.example/ ${CLICK_URL}https://2130706433/ ${CLICK_URL}https://localhost/"
        " ${CLICK_URL}https://a.example/" + "x" * 2100,
        AdContext(member_id=1, landing_url="ftp://x.example/"),
        False,
    ),
    ("refused anchors", INSERTER, '<a href="https://a.example/\\x">x</a><a href="http://[::1]/">y</a>', SHOP, True),
    (
        "refused default landing",
        INSERTER,
        "${CLICK_URL} ${CLICK_URL_ENC} ${IMPRESSION_URL} ${CLICK_URL}https://ok.example/",
        AdContext(member_id=1, landing_url="https://a.example/\u00a0"),
        False,
    ),
    ("no landing anywhere", INSERTER, "${CLICK_URL} ${CLICK_URL_ENC}", NONE, False),
    (
        "refused redirect hosts",
        INSERTER,
        "${CLICK_URL}",
        AdContext(member_id=1, landing_url="https://shop.example/", redirect_hosts=("com", "*", "localhost")),
        False,
    ),
]


def outcome(inserter: Inserter, markup: str, ad: AdContext, wrap_links: bool) -> dict[str, Any]:
    """The insertion as plain data: every field, or every problem listed."""
    random.seed(20)  # ${CACHEBUSTER}
    try:
        return {"insertion": inserter.insert(markup, ad, wrap_links=wrap_links)._asdict()}
    except InsertRequestError as error:
        return {"problems": error.problems}


def outcomes(names: list[str]) -> dict[str, dict[str, Any]]:
    """The named cases' outcomes at `NOW`."""
    real = time.time
    time.time = lambda: NOW  # the tokens' issued_at
    try:
        return {name: outcome(*case) for name, *case in CASES if name in names}  # type: ignore[arg-type]
    finally:
        time.time = real


@pytest.mark.parametrize("name", [case[0] for case in CASES])
def test_insertion_output_is_unchanged(name: str) -> None:
    expected = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert outcomes([name]) == {name: expected[name]}


def test_every_case_is_in_the_golden_file() -> None:
    assert sorted(json.loads(GOLDEN.read_text(encoding="utf-8"))) == sorted(case[0] for case in CASES)


if __name__ == "__main__":
    GOLDEN.parent.mkdir(exist_ok=True)
    text = json.dumps(outcomes([case[0] for case in CASES]), indent=1, ensure_ascii=False, sort_keys=True)
    GOLDEN.write_text(text + "\n", encoding="utf-8")
