"""pydantic's validation errors, rewritten as clickbus problems: `key.path: expected ..., got <value>`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

# pydantic's own error types, in clickbus's words; values that fail a clickbus check carry their own message
_MESSAGES = {
    "missing": "required",
    "missing_argument": "required",
    "unexpected_keyword_argument": "unknown key",
    "extra_forbidden": "unknown key",
    "int_type": "expected int",
    "bool_type": "expected bool",
    "float_type": "expected float",
    "string_type": "expected str",
    "dataclass_type": "expected a table",
    "dict_type": "expected a table",
    "tuple_type": "expected a list",
    "list_type": "expected a list",
}
_WITHOUT_VALUE = {"required", "unknown key", "expected a table"}


def problems(error: ValidationError) -> list[str]:
    """One line per error, in the order pydantic found them."""
    return [_problem(e) for e in error.errors(include_url=False)]


def _problem(error: ErrorDetails) -> str:
    ctx: Mapping[str, Any] = error.get("ctx") or {}
    loc = [*error["loc"], *([ctx["at"]] if ctx.get("at") else [])]
    message = _MESSAGES.get(error["type"], error["msg"])
    if message in _WITHOUT_VALUE or ctx.get("at"):  # a check across keys has the whole table as its input
        return f"{key_path(loc)}: {message}"
    shown = ctx["value"] if ctx.get("value") is not None else error["input"]
    return f"{key_path(loc)}: {message}, got {shown!r}"


def key_path(loc: Sequence[int | str]) -> str:
    """`('tokens', 'keys', 0, 'file')` as `tokens.keys[0].file`; a table key's own error names the key."""
    path = ""
    for part in loc:
        if part == "[key]":
            continue
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path
