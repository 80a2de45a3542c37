"""The commented TOML file of every declared setting and its default (`conf/clickbus.toml`).

Values are rendered in the form their parser reads back, so loading the file gives the defaults.
Tables of tables (`[members.ID]`, `[[tokens.keys]]`) have no default entries: they appear as commented
examples built from each field's `Doc.example` or default.
"""

from __future__ import annotations

import dataclasses
import json
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Any

from clickbus.settings.declare import Field, env_overrides, fields_of, is_table, item_table
from clickbus.settings.values import HostPort

HEADER = """\
# clickbus configuration: every setting, its default and its meaning. `make run` starts clickbus on this file.
# Generated from clickbus/config.py by `clickbus config defaults` (a test keeps the two equal): edit the
# declarations there, then regenerate. Every key is optional; the values below are the defaults.
"""


def render(cls: type) -> str:
    """The commented TOML of every setting of `cls`, each at its default."""
    env = [f"#   {var} -> {path}" for var, path in env_overrides(cls).items()]
    lines = [*HEADER.splitlines(), "# Environment overrides:", *env, "", *_table(cls, "")]
    return "\n".join(lines) + "\n"


def _table(cls: type, prefix: str) -> list[str]:
    fields = [f for f in fields_of(cls, prefix) if f.doc is not None or is_table(f.kind)]
    plain = [f for f in fields if not is_table(f.kind) and item_table(f.kind) is None]
    tables = [f for f in fields if is_table(f.kind)]
    examples = [f for f in fields if item_table(f.kind) is not None]
    out = [line for f in plain for line in _setting(f)]
    for f in tables:
        out += ["", f"# {_summary(f.kind)}", f"[{f.path}]", *_table(f.kind, f.path + ".")]
    for f in examples:
        out += ["", *_example(f)]
    return out


def _setting(f: Field, *, commented: bool = False) -> list[str]:
    assert f.doc is not None, f.path
    value = f.default
    if value is None or value is dataclasses.MISSING or (value == () and f.doc.example is not None):
        value, commented = f.doc.example, True
    assert value is not None, f"{f.path}: give Doc(example=...) for a setting without a default"
    env = f" (environment: {f.doc.env})" if f.doc.env else ""
    line = f"{f.name} = {toml_value(value)}"
    return [f"# {_sentence(f.doc.text)}{env}", f"# {line}" if commented else line]


def _example(f: Field) -> list[str]:
    assert f.doc is not None, f.path
    item = item_table(f.kind)
    assert item is not None
    header = f"[{f.path}.{f.doc.example}]" if f.tables else f"[[{f.path}]]"
    keyed = f.tables.key_field if f.tables else None
    body = [line for g in fields_of(item) if g.name != keyed for line in _setting(g, commented=True)]
    return [f"# {_sentence(f.doc.text)}. {_summary(item)}", f"# {header}", *body]


def _summary(cls: type) -> str:
    return (cls.__doc__ or cls.__name__).strip().splitlines()[0]


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def toml_value(value: Any) -> str:
    """`value` as TOML, in the form its setting's parser reads back."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path | HostPort | IPv4Network | IPv6Network):
        return json.dumps(str(value), ensure_ascii=False)
    if isinstance(value, tuple | list) and value and all(isinstance(v, HostPort) for v in value):
        return toml_value(",".join(str(v) for v in value))  # bootstrap servers: one comma-separated string
    if isinstance(value, tuple | list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")
