"""Host names: redirect host entries, public suffixes from the bundled Public Suffix List, private hosts."""

from __future__ import annotations

import pytest

from clickbus.hosts import is_private, is_public_suffix, redirect_host_problem


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        (".", "not a host name"),
        ("*", "not a host name"),
        ("*.shop.example", "not a host name"),
        ("%2e", "not a host name"),
        ("shop%2eexample", "not a host name"),
        ("", "not a host name"),
        (".shop.example", "not a host name"),
        ("shop.example.", "not a host name"),
        ("shop..example", "not a host name"),
        ("sh op.example", "not a host name"),
        ("-shop.example", "not a host name"),
        ("b\u00fccher.example", "not a host name"),
        ("a" * 64 + ".example", "not a host name"),
        ("com", "public suffix"),
        ("co.uk", "public suffix"),
        ("github.io", "public suffix"),
        ("blogspot.com", "public suffix"),
        ("example", "own machine or network"),  # a name without a dot: the visitor's DNS search list
        ("127.0.0.1", "private"),
        ("10.1.2.3", "private"),
        ("localhost", "localhost"),
        ("[::1]", "loopback"),
        ("0x7f.1", "reads to a browser as"),
        ("2130706433", "reads to a browser as"),
        ("[::0001]", "reads to a browser as"),
    ],
)
def test_refused_redirect_hosts(entry: str, problem: str) -> None:
    found = redirect_host_problem(entry)
    assert found is not None and problem in found, found


@pytest.mark.parametrize(
    "entry", ["shop.example", "www.shop.example", "xn--bcher-kva.example", "shop.co.uk", "a_b.example", "8.8.8.8"]
)
def test_accepted_redirect_hosts(entry: str) -> None:
    assert redirect_host_problem(entry) is None


@pytest.mark.parametrize("entry", ["localhost", "127.0.0.1", "[::1]", "printer.local"])
def test_private_redirect_hosts_in_development(entry: str) -> None:
    assert redirect_host_problem(entry, allow_private=True) is None
    assert redirect_host_problem("com", allow_private=True) is not None  # never a public suffix


def test_the_public_suffix_list_is_bundled_not_fetched() -> None:
    from pathlib import Path

    import publicsuffixlist

    assert (Path(publicsuffixlist.__file__).parent / "public_suffix_list.dat").stat().st_size > 100_000
    assert is_public_suffix("com") and is_public_suffix("s3.amazonaws.com") and not is_public_suffix("amazon.com")


@pytest.mark.parametrize(
    ("host", "private"), [("8.8.8.8", False), ("100.64.0.1", True), ("[::ffff:7f00:1]", True), ("a.example", False)]
)
def test_private_hosts(host: str, private: bool) -> None:
    assert is_private(host) is private
