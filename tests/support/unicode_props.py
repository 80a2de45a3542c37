"""Generates `clickbus/unicode_props.py` from the Unicode Character Database, and reads it back for its test.

    python -m tests.support.unicode_props /usr/share/unicode > clickbus/unicode_props.py

`/usr/share/unicode` is where Debian's `unicode-data` package puts the UCD (`apt-get install
unicode-data`); any directory holding the UCD's `DerivedCoreProperties.txt` and `PropList.txt` does.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

UCD = Path("/usr/share/unicode")
_LINE = re.compile(r"^([0-9A-F]{4,6})(?:\.\.([0-9A-F]{4,6}))?\s*;\s*(\w+)")
_VERSION = re.compile(r"^# \w+-(\d+\.\d+\.\d+)\.txt")

Ranges = tuple[tuple[int, int], ...]


def version(path: Path) -> str:
    """The Unicode version a UCD file's first line names (`# DerivedCoreProperties-15.0.0.txt`)."""
    match = _VERSION.match(path.read_text(encoding="utf-8").splitlines()[0])
    assert match, f"{path}: no version on its first line"
    return match.group(1)


def ranges(path: Path, prop: str) -> Ranges:
    """The code point ranges of binary property `prop` in a UCD file, merged and in order."""
    found: list[tuple[int, int]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _LINE.match(line)
        if match and match.group(3) == prop:
            first = int(match.group(1), 16)
            last = int(match.group(2) or match.group(1), 16)
            if found and found[-1][1] + 1 == first:
                found[-1] = (found[-1][0], last)
            else:
                found.append((first, last))
    return tuple(found)


def module(ucd: Path) -> str:
    """The text of `clickbus/unicode_props.py` for the UCD in `ucd`."""
    derived, proplist = ucd / "DerivedCoreProperties.txt", ucd / "PropList.txt"
    assert version(derived) == version(proplist), "DerivedCoreProperties.txt and PropList.txt of one version"
    lines = [
        '"""Unicode properties that Python\'s `unicodedata` does not expose: generated, do not edit.',
        "",
        f"From the Unicode Character Database {version(derived)} (DerivedCoreProperties.txt, PropList.txt) by",
        "`python -m tests.support.unicode_props /usr/share/unicode > clickbus/unicode_props.py` (Debian's",
        "`unicode-data` package); `tests/test_unicode_props.py` checks it against those files and `unicodedata`.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        f'UNICODE_VERSION = "{version(derived)}"',
    ]
    for name, path, prop in (
        ("DEFAULT_IGNORABLE", derived, "Default_Ignorable_Code_Point"),
        ("BIDI_CONTROL", proplist, "Bidi_Control"),
    ):
        lines += ["", f"# {prop}: first and last code point of each range", f"{name}: tuple[tuple[int, int], ...] = ("]
        lines += [f"    (0x{first:04X}, 0x{last:04X})," for first, last in ranges(path, prop)]
        lines.append(")")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(module(Path(sys.argv[1]) if len(sys.argv) > 1 else UCD))
