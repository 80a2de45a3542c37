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


def test_versus_matches_rows_across_runs_and_tells_like_names_apart() -> None:
    from bench.versus import compare

    def rows(edge: float, against_nginx: float, p50: float) -> list[dict[str, object]]:
        return [
            {
                "name": "redirect",
                "value": 111,
                "unit": "us",
                "ratio": edge,
                "baseline_name": "bare",
                "target": ">= 0.6",
            },
            {
                "name": "redirect",
                "value": 111,
                "unit": "us",
                "ratio": against_nginx,
                "baseline_name": "nginx",
                "target": "report",
            },
            {"name": "p50", "value": p50, "unit": "ms", "ratio": None, "target": "informational"},
            # a measured rate in the name: still one row across runs
            {"name": f"freshness, {round(990 + p50)} clicks/s", "value": p50 / 10, "unit": "s", "target": "<= 5 s"},
            # names that differ only in numbers: told apart by their order
            {"name": "wrap_links x 8000 (24 KB)", "value": edge * 10, "unit": "MB/s", "target": "flat"},
            {"name": "wrap_links x 21800 (64 KB)", "value": edge * 20, "unit": "MB/s", "target": "flat"},
        ]

    lines = compare([rows(0.40, 0.05, 20.0), rows(0.44, 0.06, 18.0)], [rows(0.45, 0.07, 3.0), rows(0.47, 0.07, 4.0)])
    assert lines == [
        "redirect, against bare [ratio, >= 0.6]: old 0.4 0.44 (median 0.42); new 0.45 0.47 (median 0.46); "
        "new/old 1.10x",
        "redirect, against nginx [ratio, report]: old 0.05 0.06 (median 0.055); new 0.07 0.07 (median 0.07); "
        "new/old 1.27x",
        "p50 [ms, informational]: old 20 18 (median 19); new 3 4 (median 3.5); new/old 0.18x",
        "freshness, 993 clicks/s [s, <= 5 s]: old 2 1.8 (median 1.9); new 0.3 0.4 (median 0.35); new/old 0.18x",
        "wrap_links x 8000 (24 KB) [MB/s, flat]: old 4 4.4 (median 4.2); new 4.5 4.7 (median 4.6); new/old 1.10x",
        "wrap_links x 21800 (64 KB) [MB/s, flat]: old 8 8.8 (median 8.4); new 9 9.4 (median 9.2); new/old 1.10x",
    ]
