"""Serve-time insertion: every macro, link wrapping and refused landings."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable
from urllib.parse import unquote

import pytest

from clickbus import creative, landing
from clickbus.creative import Inserter, anchor_hrefs
from clickbus.errors import InsertRequestError
from clickbus.tokens import AdContext, Keyring, new_key

KEYRING = Keyring({"k1": new_key()}, "k1")
INSERTER = Inserter(KEYRING, "https://edge.test", ttl_s=3600)
AD = AdContext(member_id=13, auction_id_64=677373076784237441, user_id_64=42, landing_url="https://shop.example/")
CLICK = re.compile(r"https://edge\.test/ck/([A-Za-z0-9_-]+)")


def landing_of(url: str) -> str:
    match = CLICK.fullmatch(url)
    assert match, url
    return KEYRING.verify(match.group(1)).ad.landing_url


def test_click_macro_with_landing_signs_that_landing() -> None:
    done = INSERTER.insert('<a href="${CLICK_URL}https://other.example/p?a=1&amp;b=2">x</a>', AD)
    found = re.search(r'href="([^"]+)"', done.markup)
    assert found, done.markup
    url = found.group(1)
    assert landing_of(url) == "https://other.example/p?a=1&b=2"


def test_click_macro_without_landing_uses_default() -> None:
    done = INSERTER.insert('<a href="${CLICK_URL}">x</a>', AD)
    assert done.markup == f'<a href="{done.click_url}">x</a>'
    assert landing_of(done.click_url or "") == AD.landing_url


def test_two_click_macros_get_their_own_landings() -> None:
    markup = '<a href="${CLICK_URL}https://a.example/">a</a><a href="${CLICK_URL}https://b.example/">b</a>'
    urls = re.findall(r'href="([^"]+)"', INSERTER.insert(markup, AD).markup)
    assert [landing_of(u) for u in urls] == ["https://a.example/", "https://b.example/"]


@pytest.mark.parametrize(("macro", "decode_times"), [("${CLICK_URL_ENC}", 1), ("${CLICK_URL_ENC_ENC}", 2)])
def test_encoded_click_macros(macro: str, decode_times: int) -> None:
    done = INSERTER.insert(f"clickTag={macro}", AD)
    value = done.markup.removeprefix("clickTag=")
    assert "/" not in value and ":" not in value
    for _ in range(decode_times):
        value = unquote(value)
    assert value == f"{done.click_url}?r="


def test_impression_cachebuster_and_auction_macros() -> None:
    done = INSERTER.insert("${IMPRESSION_URL}|${CACHEBUSTER}|${CACHEBUSTER}|${AUCTION_ID}", AD)
    impression, bust1, bust2, auction = done.markup.split("|")
    assert impression == done.impression_url
    assert KEYRING.verify(impression.rsplit("/", 1)[1]).ad.member_id == 13
    assert bust1 == bust2 and bust1.isdigit()
    assert auction == "677373076784237441"


@pytest.mark.parametrize("markup", ["${FOO}", "${click_url}", "$CLICK_URL", "${CLICK_URL", "plain"])
def test_unknown_macros_stay_untouched(markup: str) -> None:
    assert INSERTER.insert(markup, AD).markup == markup


def test_wrap_links_wraps_plain_anchors_only() -> None:
    markup = (
        '<a class="x" href="https://shop.example/item?id=1&amp;c=2">a</a>'
        "<a href='http://plain.example/'>b</a>"
        '<a href="/relative">c</a><img src="https://cdn.example/i.png">'
    )
    done = INSERTER.insert(markup, AD, wrap_links=True)
    hrefs = re.findall(r"href=[\"']([^\"']+)[\"']", done.markup)
    assert [landing_of(h) for h in hrefs[:2]] == ["https://shop.example/item?id=1&c=2", "http://plain.example/"]
    assert hrefs[2] == "/relative"
    assert 'src="https://cdn.example/i.png"' in done.markup


def test_without_wrap_option_links_are_left_alone() -> None:
    markup = '<a href="https://shop.example/">a</a>'
    assert INSERTER.insert(markup, AD).markup == markup


@pytest.mark.parametrize(
    "landing",
    ["javascript:alert(1)", "//evil.example/", "https://a.example/\x01x", "https://u@evil.example/"],
)
def test_refused_landing_in_markup(landing: str) -> None:
    with pytest.raises(InsertRequestError) as caught:
        INSERTER.insert(f'<a href="${{CLICK_URL}}{landing}">x</a>', AD)
    assert caught.value.problems[0]["field"] == "markup ${CLICK_URL}"


def test_every_refused_landing_is_listed() -> None:
    ad = AdContext(member_id=1, landing_url="ftp://x.example/")
    with pytest.raises(InsertRequestError) as caught:
        INSERTER.insert("${CLICK_URL}javascript:x ${CLICK_URL}https://a@b.example/", ad)
    fields = [p["field"] for p in caught.value.problems]
    assert fields == ["landing_url"] + ["markup ${CLICK_URL}"] * 3  # javascript:x has no scheme nor host


def test_click_macro_without_any_landing_is_an_error() -> None:
    with pytest.raises(InsertRequestError, match="error"):
        INSERTER.insert("${CLICK_URL}", AdContext(member_id=1))


def test_no_default_landing_means_no_click_url() -> None:
    done = INSERTER.insert("${IMPRESSION_URL}", AdContext(member_id=1))
    assert done.click_url is None and done.markup == done.impression_url


def test_default_landing_host_may_receive_appended_destinations() -> None:
    done = INSERTER.insert("", AD)
    assert KEYRING.verify(done.token).ad.redirect_hosts == ("shop.example",)


# Markups that made the old anchor regex quadratic (each `<a` rescanned to the end), and the
# other shapes a scanner can stumble on: unclosed quotes, bare names, many real links.
ADVERSARIAL: dict[str, Callable[[int], str]] = {
    "open anchors": lambda n: "<a " * n,
    "unclosed quotes": lambda n: '<a href="' * n,
    "bare attributes": lambda n: "<a x y=z " * n,
    "spaces without =": lambda n: "<a href" + " " * n,
    "many links": lambda n: "".join(f'<a href="https://x.example/{i}">' for i in range(n)),
    "click macros": lambda n: "${CLICK_URL}" * n,
}


@pytest.mark.parametrize(
    ("markup", "values"),
    [
        ('<A HREF="HTTPS://a.example/">', ["HTTPS://a.example/"]),
        ('<a title="x>y" href="https://a.example/">', ["https://a.example/"]),
        ("<a\thref = 'https://a.example/' href=\"https://b.example/\">", ["https://a.example/"]),
        ('<a data-href="https://a.example/">', []),
        ("<a href=https://a.example/>", []),
        ('<a href="https://a.example/', []),
        ('<abbr href="https://a.example/">', []),
        ('<a/href="https://a.example/">', ["https://a.example/"]),
    ],
)
def test_anchor_scan_reads_tags_as_a_browser_does(markup: str, values: list[str]) -> None:
    assert [markup[start:end] for start, end in anchor_hrefs(markup)] == values


class _Counting:
    """A compiled pattern that adds up the characters its searches and matches read."""

    def __init__(self, pattern: re.Pattern[str]) -> None:
        self.pattern = pattern
        self.read = 0

    def search(self, text: str, pos: int = 0) -> re.Match[str] | None:
        found = self.pattern.search(text, pos)
        self.read += (found.end() if found else len(text)) - pos + 1
        return found

    def match(self, text: str, pos: int = 0) -> re.Match[str] | None:
        found = self.pattern.match(text, pos)
        self.read += (found.end() - pos if found else 0) + 1
        return found


@pytest.mark.parametrize("shape", ADVERSARIAL)
def test_anchor_scan_reads_each_character_a_bounded_number_of_times(
    monkeypatch: pytest.MonkeyPatch, shape: str
) -> None:
    markup = ADVERSARIAL[shape](8000)
    counters = [_Counting(creative._ANCHOR_START), _Counting(creative._ATTRIBUTE)]
    monkeypatch.setattr(creative, "_ANCHOR_START", counters[0])
    monkeypatch.setattr(creative, "_ATTRIBUTE", counters[1])
    anchor_hrefs(markup)
    assert sum(c.read for c in counters) <= 3 * len(markup) + 10


def _cpu_seconds(markup: str) -> float:
    best = float("inf")
    for _ in range(3):
        landing._judge.cache_clear()  # each round signs its landings afresh, at any size
        started = time.process_time()
        with contextlib.suppress(InsertRequestError):
            INSERTER.insert(markup, AD, wrap_links=True)
        best = min(best, time.process_time() - started)
    return best


@pytest.mark.parametrize("shape", ADVERSARIAL)
def test_insertion_grows_linearly_on_adversarial_markup(shape: str) -> None:
    # 8x the input: linear work takes about 8x as long, quadratic 64x. CPU time, best of three,
    # and a bound three times the linear figure, so a busy machine does not fail it.
    small, large = _cpu_seconds(ADVERSARIAL[shape](1000)), _cpu_seconds(ADVERSARIAL[shape](8000))
    assert large <= 24 * max(small, 1e-4), (small, large)


@pytest.mark.parametrize("hosts", [("com",), ("shop.example", "*"), ("localhost",)])
def test_in_process_insertion_checks_redirect_hosts_too(hosts: tuple[str, ...]) -> None:
    ad = AdContext(member_id=13, landing_url="https://shop.example/", redirect_hosts=hosts)
    with pytest.raises(InsertRequestError) as caught:
        INSERTER.insert("${CLICK_URL}", ad)
    assert [p["field"] for p in caught.value.problems] == ["auction.redirect_hosts"]


def test_in_process_insertion_refuses_private_landings_unless_allowed() -> None:
    ad = AdContext(member_id=13, landing_url="http://127.0.0.1:8000/")
    with pytest.raises(InsertRequestError):
        INSERTER.insert("${CLICK_URL}", ad)
    allowing = Inserter(KEYRING, "https://edge.test", ttl_s=3600, allow_private_landings=True)
    assert allowing.insert("${CLICK_URL}", ad).click_url is not None
