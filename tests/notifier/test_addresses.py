"""The SSRF guard: bidders on internal addresses are refused unless allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from clickbus.log.port import Log, Topic
from clickbus.notifier.addresses import refused
from tests.notifier import factory as f
from tests.notifier.conftest import RunNotifier, StartStub
from tests.support.configs import notifier_config
from tests.support.records import records
from tests.support.waiting import eventually_async


@pytest.mark.parametrize(
    ("address", "bad"),
    [
        ("127.0.0.1", True),
        ("10.1.2.3", True),
        ("172.16.0.1", True),
        ("192.168.1.1", True),
        ("169.254.169.254", True),  # cloud metadata
        ("100.64.0.1", True),  # carrier-grade NAT
        ("0.0.0.0", True),
        ("224.0.0.1", True),
        ("::1", True),
        ("fe80::1", True),
        ("fd00:ec2::254", True),  # AWS metadata over IPv6
        ("::ffff:127.0.0.1", True),
        ("::ffff:10.0.0.1", True),
        ("2130706433", True),  # 127.0.0.1 as one decimal number, as browsers and inet_aton read it
        ("127.1", True),
        ("0177.0.0.1", True),  # octal
        ("0x7f.1", True),  # hex
        ("0x7f000001", True),
        ("127.0.0.1.", True),
        ("999.1", True),  # ends in a number yet stands for no address
        ("1.2.3.4.5", True),
        ("64:ff9b::7f00:1", True),  # NAT64 of 127.0.0.1
        ("64:ff9b::808:808", True),  # NAT64 reaches any IPv4 host: never a bidder's own address
        ("2002:7f00:1::", True),  # 6to4
        ("2001:0:4136:e378::1", True),  # Teredo
        ("::7f00:1", True),  # IPv4-compatible
        ("198.18.0.1", True),
        ("134744072", False),  # 8.8.8.8 as one number
        ("8.8.8.8", False),
        ("93.184.216.34", False),
        ("2606:4700:4700::1111", False),
    ],
)
def test_refused_ranges(address: str, bad: bool) -> None:
    assert refused(address) is bad


@pytest.mark.parametrize("name", ["example.com", "shop.example.", "a1.example", "0x.example"])
def test_names_are_left_to_the_resolver(name: str) -> None:
    with pytest.raises(ValueError):
        refused(name)


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "localhost", "2130706433", "127.1", "0177.0.0.1", "0x7f.1", "[64:ff9b::7f00:1]"]
)
async def test_private_bidder_refused_unless_allowed(
    log: Log, stubs: StartStub, running: RunNotifier, tmp_path: Path, host: str
) -> None:
    stub = await stubs()
    port = stub.url.split(":")[2].split("/")[0]
    guarded = {"click_uri": f"http://{host}:{port}/click", "allow_private": False}
    async with running(notifier_config(tmp_path, {13: guarded})):
        await f.append(log, f.click(13))
        (dead,) = await eventually_async(lambda: records(log, Topic.DLQ))
    assert dead["reason"] == "refused"
    assert "not public" in dead["last_error"] or "non-public" in dead["last_error"]
    assert stub.received == []
