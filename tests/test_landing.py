"""The landing URL policy."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clickbus.errors import LandingURLError
from clickbus.landing import (
    MAX_LANDING_CHARS,
    PRIVATE_PROBLEM,
    browser_host,
    check_landing,
    host_allowed,
    landing_problems,
    location_header,
)


@pytest.mark.parametrize(
    "url",
    ["https://shop.example/", "http://shop.example:8080/p?q=1#f", "https://[2606:4700::1111]/", "HTTPS://X.EXAMPLE"],
)
def test_accepted(url: str) -> None:
    assert check_landing(url) == url


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("javascript:alert(1)", "scheme"),
        ("data:text/html,x", "scheme"),
        ("//evil.example/", "scheme"),
        ("https:///path", "host"),
        ("https://good.example@evil.example/", "userinfo"),
        ("https://evil.example\\@good.example/", "backslash"),
        ("https://a.example/\r\nLocation: x", "control"),
        ("https://a.example/ x", "whitespace"),
        ("https://a.example:99999/", "valid URL"),
        ("https://a.example/" + "x" * MAX_LANDING_CHARS, "longer"),
        ("https://a.example/\u0085", "control"),  # NEL, a C1 control
        ("https://a.example/\u2028x", "control"),  # line separator
        ("https://a.example/\u202egnp.exe", "bidi"),  # right-to-left override
        ("https://a.example/\u2066x", "bidi"),
        ("https://a.example/\u00a0", "whitespace"),
        ("https://evil.com%2f.shop.example/", "WHATWG"),
        ("https://a<b.example/", "WHATWG"),
        ("https://a|b.example/", "WHATWG"),
        ("https://a%00b.example/", "WHATWG"),
        ("https://a%20b.example/", "WHATWG"),
        ("https://a^b.example/", "WHATWG"),
        ("https://evil%2eshop.example/", "reads as 'evil.shop.example'"),
        ("https://2130706433/", "reads as '127.0.0.1'"),
        ("https://0x7f.1/", "reads as '127.0.0.1'"),
        ("https://0177.0.0.1/", "reads as '127.0.0.1'"),
    ],
)
def test_refused(url: str, problem: str) -> None:
    with pytest.raises(LandingURLError) as caught:
        check_landing(url)
    assert any(problem in p for p in caught.value.problems)


def test_all_problems_are_listed() -> None:
    assert len(landing_problems("ftp://u@x\\y/ z")) >= 4


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://shop.example/x", True),
        ("https://www.shop.example/x", True),
        ("https://evilshop.example/", False),
        ("https://shop.example.evil/", False),
        ("javascript://shop.example/", False),
        ("https://u@shop.example/", False),
    ],
)
def test_host_allowed(url: str, allowed: bool) -> None:
    assert host_allowed(url, ("shop.example",)) is allowed


@given(st.text(max_size=300))
def test_policy_never_raises(url: str) -> None:
    landing_problems(url)


@pytest.mark.parametrize(
    ("url", "header"),
    [
        ("https://shop.example/p?q=1", "https://shop.example/p?q=1"),  # ASCII: exactly as signed
        ("https://shop.example/caf\u00e9?q=\u00fc#\u00e9", "https://shop.example/caf%C3%A9?q=%C3%BC#%C3%A9"),
        ("https://b\u00fccher.example/", "https://xn--bcher-kva.example/"),
    ],
)
def test_location_header_is_ascii_and_percent_encoded(url: str, header: str) -> None:
    assert location_header(url) == header


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://SHOP.example/", "shop.example"),
        ("https://\u0455hop.example/", "xn--hop-ehd.example"),  # Cyrillic dze: a homograph, not shop.example
        ("https://shop.example./", "shop.example."),
    ],
)
def test_hosts_are_read_as_a_browser_reads_them(url: str, host: str) -> None:
    assert browser_host(url) == host


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://\u0455hop.example/", False),
        ("https://shop.example./", False),
        ("https://shop%2eexample/", False),  # a browser goes to shop.example, but that is not what it says
        ("https://evil.example%2f.shop.example/", False),
        ("https://b\u00fccher.example/", True),
    ],
)
def test_hosts_are_allowed_as_a_browser_would_go_there(url: str, allowed: bool) -> None:
    assert host_allowed(url, ("shop.example", "xn--bcher-kva.example")) is allowed


# Unicode properties: each was accepted before the check worked from them (U+FFF9 is format, Cf; the others are
# Default_Ignorable_Code_Point or Bidi_Control, which a browser drops from a host or draws as nothing).
INVISIBLE = ["\u061c", "\u115f", "\u3164", "\uffa0", "\u034f", "\U000e0001", "\ufff9", "\u180b", "\ufe0f", "\u2065"]


@pytest.mark.parametrize("char", INVISIBLE, ids=[f"U+{ord(c):04X}" for c in INVISIBLE])
@pytest.mark.parametrize(
    "where", ["https://shop{c}.example/", "https://shop.example/p{c}q", "https://shop.example/?q={c}"]
)
def test_invisible_characters_are_refused_anywhere(char: str, where: str) -> None:
    problems = landing_problems(where.format(c=char))
    assert any("invisible" in p for p in problems), problems


def test_every_default_ignorable_and_bidi_control_is_refused() -> None:
    from clickbus.unicode_props import BIDI_CONTROL, DEFAULT_IGNORABLE

    for first, last in DEFAULT_IGNORABLE + BIDI_CONTROL:
        for code in {first, (first + last) // 2, last}:
            assert landing_problems(f"https://shop.example/{chr(code)}"), f"U+{code:04X}"


@pytest.mark.parametrize("url", ["https://shop.example/caf\u00e9", "https://b\u00fccher.example/\u65e5\u672c"])
def test_visible_non_ascii_is_still_accepted(url: str) -> None:
    assert landing_problems(url) == ()


PRIVATE = [
    "http://127.0.0.1/",
    "http://127.1.2.3:8080/x",
    "http://[::1]/",
    "http://[0:0:0:0:0:0:0:1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:a00:1]/",
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.1/",
    "http://172.16.0.1/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",
    "http://0.0.0.0/",
    "http://[fe80::1]/",
    "http://[fc00::1]/",
    "http://localhost/",
    "http://LOCALHOST./",
    "http://app.localhost/",
    "http://printer.local/",
    "http://db.internal/",
    "http://router.home.arpa/",
    "http://intranet/",
]


@pytest.mark.parametrize("url", PRIVATE)
def test_private_landings_are_refused_unless_allowed(url: str) -> None:
    assert landing_problems(url) == (PRIVATE_PROBLEM,)
    assert landing_problems(url, allow_private=True) == ()
    assert not host_allowed(url, (browser_host(url),))
    if not browser_host(url).endswith("."):  # a redirect host is a name without the root's dot
        assert host_allowed(url, (browser_host(url),), allow_private=True)


@pytest.mark.parametrize("url", ["http://127.0.0.1.example/", "http://localhost.example/", "http://8.8.8.8/"])
def test_public_hosts_that_look_private_are_accepted(url: str) -> None:
    assert landing_problems(url) == ()
