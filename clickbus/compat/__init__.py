"""Each third-party library's private attributes, used in one module per library.

Every use names the version it was checked against; `tests/test_compat.py` fails loudly when an upgrade
moves or renames one of them.
"""
