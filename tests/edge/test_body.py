"""`parse_json`: orjson's strict grammar, and an object with a name twice is refused whatever the nesting."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clickbus.edge.body import parse_json
from clickbus.errors import BodyError

# Names and strings that look like the end of a name (`":`) inside text, where the fast count could be fooled.
TEXT = st.sampled_from(["a", "b", 'x":', '":', "\\", " : ", "é"]) | st.text(max_size=4)
PAIRS = st.lists(st.tuples(TEXT, st.none()), max_size=4)


def _objects(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    pairs = st.lists(st.tuples(TEXT, children), max_size=4)
    return pairs.map(lambda p: ("object", p)) | st.lists(children, max_size=3).map(lambda v: ("array", v))


# integers within 64 bits: past them orjson reads a float where the stdlib reads an int (not what is tested here)
INTEGERS = st.integers(min_value=-(2**63), max_value=2**63 - 1)
DOCUMENTS = st.recursive(INTEGERS | TEXT | st.none(), _objects, max_leaves=12)


def _render(doc: Any) -> str:
    """The document as JSON text, keeping repeated names (a dict would merge them)."""
    if isinstance(doc, tuple) and doc[0] == "object":
        return "{" + ", ".join(f"{json.dumps(k)} : {_render(v)}" for k, v in doc[1]) + "}"
    if isinstance(doc, tuple) and doc[0] == "array":
        return "[" + ",".join(_render(v) for v in doc[1]) + "]"
    return json.dumps(doc)


def _repeats(doc: Any) -> bool:
    if isinstance(doc, tuple) and doc[0] == "object":
        names = [k for k, _ in doc[1]]
        return len(set(names)) != len(names) or any(_repeats(v) for _, v in doc[1])
    if isinstance(doc, tuple) and doc[0] == "array":
        return any(_repeats(v) for v in doc[1])
    return False


@given(DOCUMENTS)
def test_a_document_is_refused_exactly_when_some_object_repeats_a_name(doc: Any) -> None:
    raw = _render(doc).encode()
    if _repeats(doc):
        with pytest.raises(BodyError, match="duplicate name"):
            parse_json(raw)
    else:
        assert parse_json(raw) == json.loads(raw)


@pytest.mark.parametrize(
    "raw",
    [b'{"a": "x\\":", "a": 1}', b'{"a":{"b":1,"b":2}}', b'[{"k":1},{"k":2,"k":3}]', b'{"a" \n : 1, "a":2}'],
)
def test_repeated_names_are_found_even_when_text_looks_like_a_name(raw: bytes) -> None:
    with pytest.raises(BodyError, match="duplicate name"):
        parse_json(raw)


def test_nesting_deeper_than_python_recursion_is_400_not_500() -> None:
    with pytest.raises(BodyError, match="not valid JSON"):
        parse_json(b'{"a":' * 1000 + b"1" + b"}" * 1000)
