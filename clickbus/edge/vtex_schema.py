"""The VTEX Ads beacon body schema, validated the way ajv reports it.

The reference's error example reveals the schema::

    {"type": "object",
     "properties": {"user_id": {"type": "string"}, "session_id": {"type": "string"}},
     "anyOf": [{"required": ["user_id"]}, {"required": ["session_id"]}]}

clickbus adds `"maxLength": edge.max_text_chars` to both properties, so no beacon
records an unbounded string.

Errors are ajv error objects with keys in ajv's order (`instancePath`,
`keyword`, `message`, `params`, `schemaPath`). Like ajv with `allErrors`, every
error is collected, in ajv's keyword order: the root `type`, then `anyOf` (each
failed branch, then the `anyOf` entry itself), then each property's `type` (or,
for a string, its `maxLength`).
The optional `pos` query parameter is checked here too, with the same shape. It must be
written once, as an integer is canonically written (`7`, not `07`, `+7` or `-0`): a record
names one position, read the same by every reader of the URL; given twice, it is an array,
which is not an integer (ajv's `type` error).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

USER_ID = "user_id"
SESSION_ID = "session_id"
POS = "pos"
ANY_OF = (USER_ID, SESSION_ID)
MAX_POS = 0xFFFF
_INTEGER = re.compile(r"0|-?[1-9][0-9]*")  # no leading zeros, no sign on 0
_MAX_DIGITS = 12  # past this the value is out of range anyway; int() of huge strings is slow

Error = dict[str, Any]


@dataclass(frozen=True, slots=True)
class BeaconBody:
    """A valid beacon body: at least one of the two ids (empty when not sent)."""

    user_id: str = ""
    session_id: str = ""


def error(instance_path: str, keyword: str, message: str, params: dict[str, Any], schema_path: str) -> Error:
    """One ajv error object, keys in ajv's order."""
    return {
        "instancePath": instance_path,
        "keyword": keyword,
        "message": message,
        "params": params,
        "schemaPath": schema_path,
    }


def _type_error(instance_path: str, expected: str, schema_path: str) -> Error:
    return error(instance_path, "type", f"must be {expected}", {"type": expected}, schema_path)


def _any_of_errors(body: dict[str, Any]) -> list[Error]:
    if any(name in body for name in ANY_OF):
        return []
    missing = [_required_error(name, f"#/anyOf/{i}/required") for i, name in enumerate(ANY_OF)]
    return [*missing, error("", "anyOf", "must match a schema in anyOf", {}, "#/anyOf")]


def _required_error(name: str, schema_path: str) -> Error:
    return error("", "required", f"must have required property '{name}'", {"missingProperty": name}, schema_path)


def _property_errors(name: str, value: Any, max_chars: int) -> list[Error]:
    if not isinstance(value, str):
        return [_type_error(f"/{name}", "string", f"#/properties/{name}/type")]
    if len(value) > max_chars:
        message = f"must NOT have more than {max_chars} characters"
        return [error(f"/{name}", "maxLength", message, {"limit": max_chars}, f"#/properties/{name}/maxLength")]
    return []


def body_errors(body: Any, max_chars: int) -> list[Error]:
    """Every schema error in a parsed JSON body (ids up to `max_chars` characters); empty when it is valid."""
    if not isinstance(body, dict):
        return [_type_error("", "object", "#/type")]
    errors = _any_of_errors(body)
    for name in ANY_OF:
        if name in body:
            errors += _property_errors(name, body[name], max_chars)
    return errors


def parse_body(body: Any, max_chars: int) -> tuple[BeaconBody | None, list[Error]]:
    """The beacon body and no errors, or None and every error."""
    errors = body_errors(body, max_chars)
    if errors:
        return None, errors
    return BeaconBody(user_id=body.get(USER_ID, ""), session_id=body.get(SESSION_ID, "")), []


def parse_pos(values: Sequence[str]) -> tuple[int | None, list[Error]]:
    """The `pos` query parameter from its `values` in the query (None when absent) and its errors, as body errors."""
    if not values:
        return None, []
    text = values[0]
    if len(values) > 1 or not _INTEGER.fullmatch(text):
        return None, [_type_error(f"/{POS}", "integer", f"#/properties/{POS}/type")]
    value = int(text) if len(text) <= _MAX_DIGITS else (-1 if text[0] == "-" else MAX_POS + 1)
    if value < 0:
        return None, [_limit_error("minimum", ">=", 0)]
    if value > MAX_POS:
        return None, [_limit_error("maximum", "<=", MAX_POS)]
    return value, []


def _limit_error(keyword: str, comparison: str, limit: int) -> Error:
    params = {"comparison": comparison, "limit": limit}
    return error(f"/{POS}", keyword, f"must be {comparison} {limit}", params, f"#/properties/{POS}/{keyword}")
