"""Unicode properties that Python's `unicodedata` does not expose: generated, do not edit.

From the Unicode Character Database 15.0.0 (DerivedCoreProperties.txt, PropList.txt) by
`python -m tests.support.unicode_props /usr/share/unicode > clickbus/unicode_props.py` (Debian's
`unicode-data` package); `tests/test_unicode_props.py` checks it against those files and `unicodedata`.
"""

from __future__ import annotations

UNICODE_VERSION = "15.0.0"

# Default_Ignorable_Code_Point: first and last code point of each range
DEFAULT_IGNORABLE: tuple[tuple[int, int], ...] = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)

# Bidi_Control: first and last code point of each range
BIDI_CONTROL: tuple[tuple[int, int], ...] = (
    (0x061C, 0x061C),
    (0x200E, 0x200F),
    (0x202A, 0x202E),
    (0x2066, 0x2069),
)
