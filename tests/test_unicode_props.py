"""The generated Unicode property table: equal to what the UCD files give, and consistent with `unicodedata`."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest

from clickbus import unicode_props
from tests.support.unicode_props import UCD, module

TABLE = Path(unicode_props.__file__)
# DerivedCoreProperties.txt: Default_Ignorable_Code_Point = Other_Default_Ignorable_Code_Point + Cf + Variation_Selector
# - White_Space - FFF9..FFFB - 13430..1343F - Prepended_Concatenation_Mark. The Cf it leaves out:
NOT_IGNORABLE_FORMAT = {*range(0xFFF9, 0xFFFC), *range(0x13430, 0x13440)}
PREPENDED_CONCATENATION_MARKS = {*range(0x0600, 0x0606), 0x06DD, 0x070F, 0x0890, 0x0891, 0x08E2, 0x110BD, 0x110CD}
EXPLICIT_BIDI_CLASSES = {"LRE", "RLE", "LRO", "RLO", "PDF", "LRI", "RLI", "FSI", "PDI"}


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def _holds(ranges: tuple[tuple[int, int], ...], code: int) -> bool:
    return any(first <= code <= last for first, last in ranges)


@pytest.mark.skipif(not (UCD / "DerivedCoreProperties.txt").exists(), reason=f"no UCD in {UCD} (unicode-data)")
def test_the_table_is_what_the_ucd_files_give() -> None:
    assert TABLE.read_text(encoding="utf-8") == module(UCD)


def test_the_table_agrees_with_unicodedata() -> None:
    """Every format character `unicodedata` knows is default-ignorable unless the derivation leaves it out."""
    if _version(unicodedata.unidata_version) > _version(unicode_props.UNICODE_VERSION):
        pytest.skip(f"unicodedata {unicodedata.unidata_version} is newer than the table: regenerate it")
    formats = [code for code in range(0x110000) if unicodedata.category(chr(code)) == "Cf"]
    left_out = NOT_IGNORABLE_FORMAT | PREPENDED_CONCATENATION_MARKS
    assert [f"U+{c:04X}" for c in formats if c not in left_out and not _holds(unicode_props.DEFAULT_IGNORABLE, c)] == []
    explicit = {c for c in formats if unicodedata.bidirectional(chr(c)) in EXPLICIT_BIDI_CLASSES}
    marks = {0x061C, 0x200E, 0x200F}  # ALM, LRM, RLM: bidi controls of an ordinary class (AL, L, R)
    expected = sorted(explicit | marks)
    assert [c for c in range(0x110000) if _holds(unicode_props.BIDI_CONTROL, c)] == expected


@pytest.mark.parametrize("code", [0x061C, 0x115F, 0x3164, 0xFFA0, 0x034F, 0xE0001, 0x200B, 0xFEFF, 0x180E])
def test_the_issues_examples_are_default_ignorable(code: int) -> None:
    assert _holds(unicode_props.DEFAULT_IGNORABLE, code)
