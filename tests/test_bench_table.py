"""The benchmarks' table: HTTP rows compare CPU per request, and each ratio is judged against its target."""

from __future__ import annotations

import pytest

from bench.load import Rate, compared, met


@pytest.mark.parametrize(
    ("target", "ratio", "expected"),
    [
        (">= 0.6", 0.61, True),
        (">= 0.6", 0.59, False),
        ("ratio >= 0.9", 1.01, True),
        ("<= 1.05 (median pair ratio)", 1.07, False),
        ("<= 1.0", 0.89, True),
        ("report", 0.5, None),
        (">= 50,000/s on one core", 0.13, None),  # a bound on the figure, not on the ratio
    ],
)
def test_a_ratio_is_judged_against_its_target(target: str, ratio: float, expected: bool | None) -> None:
    assert met({"target": target, "ratio": ratio}) is expected


def test_an_http_row_compares_cpu_per_request() -> None:
    row = compared("redirect", Rate(rps=5000, cpu_us=200), Rate(rps=20000, cpu_us=50), "bare", ">= 0.6", "pinned")
    assert (row["value"], row["unit"], row["baseline"], row["ratio"]) == (200, "us CPU/request", 50, 0.25)
    assert "5,000 req/s vs 20,000 req/s" in row["detail"]
