"""The landing URL policy."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clickbus.errors import LandingURLError
from clickbus.landing import MAX_LANDING_CHARS, check_landing, host_allowed, landing_problems


@pytest.mark.parametrize(
    "url", ["https://shop.example/", "http://shop.example:8080/p?q=1#f", "https://[2001:db8::1]/", "HTTPS://X.EXAMPLE"]
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
