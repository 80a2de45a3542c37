"""The shipped ISO 3166-1 alpha-2 list."""

from __future__ import annotations

import pytest

from clickbus.iso3166 import ALPHA_2


def test_the_list_holds_the_249_assigned_codes() -> None:
    assert len(ALPHA_2) == 249
    assert all(len(code) == 2 and code.isascii() and code.isupper() for code in ALPHA_2)


@pytest.mark.parametrize(
    ("code", "assigned"),
    [
        ("US", True),
        ("GB", True),
        ("FR", True),
        ("SS", True),
        ("AX", True),
        ("UK", False),
        ("EU", False),
        ("XK", False),
        ("AN", False),
    ],
)
def test_assigned_and_unassigned_codes(code: str, assigned: bool) -> None:
    assert (code in ALPHA_2) is assigned
