"""What a verdict is counted by: the record's dimensions and the device class of its user agent."""

from __future__ import annotations

import pytest

from clickbus.devices import device_class
from clickbus.records import dimensions
from tests.notifier import factory

IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148"
IPAD = "Mozilla/5.0 (iPad; CPU OS 12_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148"
WINDOWS = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"


@pytest.mark.parametrize(
    ("agent", "expected"),
    [
        (IPHONE, "mobile"),
        (IPAD, "tablet"),
        ("Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0", "tablet"),
        (WINDOWS, "desktop"),
        ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "other"),
        ("curl/8.5.0", "other"),
        ("", "other"),
    ],
)
def test_device_class_comes_from_the_user_agent(agent: str, expected: str) -> None:
    assert device_class(agent) == expected


def test_a_click_is_counted_by_its_token_dimensions_and_device() -> None:
    click = factory.click(user_agent=IPHONE, campaign_id=4, placement="top", publisher_id=9, country="FR")
    assert dimensions(click) == {
        "kind": "click",
        "publisher": 9,
        "campaign": 4,
        "creative": 77,
        "placement": "top",
        "country": "FR",
        "device": "mobile",
        "source": "redirect",
    }


def test_a_server_click_is_counted_by_the_device_and_location_its_publisher_sent() -> None:
    sent = factory.click(user_agent="curl/8.5.0", source="server", device="tablet", location="GB")
    assert (dimensions(sent)["device"], dimensions(sent)["country"]) == ("tablet", "GB")
    unsaid = factory.click(user_agent=WINDOWS, source="server", device="")
    assert (dimensions(unsaid)["device"], dimensions(unsaid)["country"]) == ("other", "")
