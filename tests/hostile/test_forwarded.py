"""The client address behind proxies (finding 8 of issue 11): the rightmost `X-Forwarded-For` hop our own
proxies did not add, never the leftmost one, which the client writes itself; malformed values never 500.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator

import pytest

from clickbus.config import from_mapping
from clickbus.creative import Inserter
from clickbus.edge.client import client_address
from clickbus.errors import ConfigError
from clickbus.keystore import load_keyring
from clickbus.landing import check_landing
from clickbus.settings.values import Network
from clickbus.tokens import AdContext
from tests.hostile.harness import Tally, exchange, request, serving
from tests.support.records import recorded
from tests.support.service import Service

LB = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8:ffff::/48")]
NONE: list[Network] = []

# (peer, X-Forwarded-For values, trusted proxies, the client's address)
CASES = [
    # one trusted hop (no networks configured): the peer's own entry, whatever the client prepended
    ("10.0.0.2", ["203.0.113.7"], NONE, "203.0.113.7"),
    ("10.0.0.2", ["6.6.6.6, 203.0.113.7"], NONE, "203.0.113.7"),
    ("10.0.0.2", ["6.6.6.6", "203.0.113.7"], NONE, "203.0.113.7"),  # two header lines are one list
    ("10.0.0.2", ["127.0.0.1,203.0.113.7"], NONE, "203.0.113.7"),
    ("10.0.0.2", [], NONE, "10.0.0.2"),
    ("10.0.0.2", [""], NONE, "10.0.0.2"),
    ("10.0.0.2", ["6.6.6.6, not-an-ip"], NONE, "10.0.0.2"),
    ("10.0.0.2", [" 2001:db8::1 "], NONE, "2001:db8::1"),
    # trusted networks: walk right to left past every hop in them
    ("10.0.0.2", ["6.6.6.6, 203.0.113.7, 10.1.1.1"], LB, "203.0.113.7"),
    ("10.0.0.2", ["6.6.6.6, 203.0.113.7, 10.1.1.1, 10.2.2.2"], LB, "203.0.113.7"),
    ("10.0.0.2", ["10.9.9.9, 10.1.1.1"], LB, "10.9.9.9"),  # all trusted: the leftmost
    ("10.0.0.2", ["203.0.113.7, 2001:db8:ffff::9"], LB, "203.0.113.7"),
    ("10.0.0.2", ["6.6.6.6, garbage, 10.1.1.1"], LB, "10.1.1.1"),  # malformed: the last hop a proxy vouched for
    ("10.0.0.2", ["6.6.6.6, 203.0.113.7:443"], LB, "10.0.0.2"),
    # a peer outside the trusted networks is the client, whatever it claims
    ("198.51.100.5", ["6.6.6.6, 10.1.1.1"], LB, "198.51.100.5"),
    ("198.51.100.5", ["203.0.113.7"], LB, "198.51.100.5"),
    (None, ["203.0.113.7"], LB, ""),
]


@pytest.mark.parametrize(("peer", "forwarded", "proxies", "client"), CASES)
def test_the_client_is_the_rightmost_untrusted_hop(
    peer: str | None, forwarded: list[str], proxies: list[Network], client: str
) -> None:
    assert client_address(peer, forwarded, proxies) == client


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    yield from serving(
        tmp_path_factory, "forwarded", edge='trust_forwarded = true\ntrusted_proxies = ["127.0.0.0/8"]\n'
    )


HOSTILE_VALUES = [
    b"6.6.6.6, 203.0.113.7",
    b"203.0.113.7, 6.6.6.6",
    b"",
    b",,,,",
    b"unknown",
    b"[::1]",
    b"::ffff:6.6.6.6",
    b"999.999.999.999",
    b"6.6.6.6\xff",
    b"1.2.3.4, " * 900,
    b"fe80::1%eth0",
    b"203.0.113.7;for=6.6.6.6",
]


async def test_hostile_forwarded_values_never_fail_a_click(service: Service) -> None:
    inserter = Inserter(load_keyring(service.config), service.url, ttl_s=3600)
    tally = Tally("X-Forwarded-For values")
    for n, value in enumerate(HOSTILE_VALUES):
        ad = AdContext(member_id=13, auction_id_64=n, landing_url=check_landing("https://shop.example/"))
        path = inserter.click_url(ad).removeprefix(service.url)
        payload = request("GET", path).replace(b"\r\n\r\n", b"\r\nX-Forwarded-For: " + value + b"\r\n\r\n", 1)
        answer = tally.count(await exchange(service.port, payload), repr(value[:40]))
        assert answer.status == 302, answer.raw[:300]
    tally.report()
    ips = await _client_ips(service)
    assert len(ips) == len(HOSTILE_VALUES)
    # the spoofed leftmost entry is not believed; what is not an address falls back to the (trusted) peer
    expected = {b"6.6.6.6, 203.0.113.7": "203.0.113.0", b"203.0.113.7, 6.6.6.6": "6.6.6.0", b"": "127.0.0.0"}
    expected |= {b"6.6.6.6\xff": "127.0.0.0", b"::ffff:6.6.6.6": "6.6.6.0", b"unknown": "127.0.0.0"}
    assert {value: ips[HOSTILE_VALUES.index(value)] for value in expected} == expected


async def _client_ips(service: Service) -> dict[int, str]:
    return {record["auction_id_64"]: record["client_ip"] for record in await recorded(service.config)}


@pytest.mark.parametrize(
    ("edge", "problem"),
    [
        ({"trusted_proxies": ["10.0.0.0/33"]}, "edge.trusted_proxies[0]: expected a CIDR network"),
        ({"trusted_proxies": [10]}, "edge.trusted_proxies[0]: expected a CIDR network"),
        ({"trusted_proxies": "10.0.0.0/8"}, "edge.trusted_proxies: expected a list"),
        ({"header_timeout_s": 0}, "edge.header_timeout_s: expected a positive number"),
        ({"body_timeout_s": -1.0}, "edge.body_timeout_s: expected a positive number"),
        ({"keepalive_timeout_s": "15"}, "edge.keepalive_timeout_s: expected float"),
    ],
)
def test_bad_edge_settings_fail_at_start_naming_the_key(edge: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(problem)):
        from_mapping({"edge": edge}, env={})


def test_trusted_proxies_are_networks() -> None:
    edge = from_mapping({"edge": {"trusted_proxies": ["10.0.0.0/8", "2001:db8::1"]}}, env={}).edge
    assert edge.trusted_proxies == (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::1/128"))
