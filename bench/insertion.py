"""Insertion through the Python call: a 2 KB creative with two click macros and one impression macro.

The baseline is the least any insertion must do: `str.replace` of the same three
macros with URLs computed beforehand (no signing, no validation).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from bench.load import print_rows
from clickbus.creative import Inserter
from clickbus.tokens import AdContext, Keyring, new_key

FILLER = "<p>" + "Spring sale on everything in the shop. " * 48 + "</p>"
MARKUP = (
    '<div class="ad"><a href="${CLICK_URL}https://shop.example/spring?utm_source=bus&amp;utm_medium=display">'
    '<img src="https://cdn.example/banner.jpg" width="300" height="250"></a>'
    + FILLER
    + '<a href="${CLICK_URL}https://shop.example/cart">Shop now</a>'
    '<img src="${IMPRESSION_URL}" width="1" height="1" alt=""></div>'
)
AD = AdContext(
    member_id=13,
    auction_id_64=677373076784237441,
    user_id_64=2987961585469200312,
    creative_id=4711,
    landing_url="https://shop.example/",
    custom_notify_data="bid=2.10",
)


def _rate(fn: Any, seconds: float) -> float:
    count, deadline = 0, time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < deadline:
        for _ in range(1000):
            fn()
        count += 1000
    return count / (time.perf_counter() - start)


def main(quick: bool = False) -> list[dict[str, Any]]:
    assert 1900 <= len(MARKUP) <= 2200, len(MARKUP)
    inserter = Inserter(Keyring({"k1": new_key()}, "k1"), "https://clk.example", ttl_s=86400)
    urls = ["https://clk.example/ck/" + "A" * 180] * 2 + ["https://clk.example/i/" + "A" * 180]

    def baseline() -> str:
        out = MARKUP.replace("${CLICK_URL}https://shop.example/spring?utm_source=bus&amp;utm_medium=display", urls[0])
        return out.replace("${CLICK_URL}https://shop.example/cart", urls[1]).replace("${IMPRESSION_URL}", urls[2])

    def insert() -> object:
        return inserter.insert(MARKUP, AD)

    rounds, seconds = (1, 0.5) if quick else (5, 1.0)
    subject, floor = [], []
    for _ in range(rounds):
        subject.append(_rate(insert, seconds))
        floor.append(_rate(baseline, seconds))
    value, base = statistics.median(subject), statistics.median(floor)
    row = {
        "name": "insertion, Python call, 2 KB creative (2 click + 1 impression macros)",
        "value": value,
        "unit": "creatives/s",
        "baseline": base,
        "baseline_name": "str.replace of the same macros, URLs precomputed",
        "ratio": value / base,
        "target": ">= 50,000/s on one core",
        "detail": f"{rounds} rounds of {seconds}s, median",
    }
    print_rows([row])
    return [row]


if __name__ == "__main__":
    main()
