"""The declaration side: `Doc` for each setting, tables keyed by name or number, and a walk over them all."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, get_args, get_origin, get_type_hints

from pydantic import GetCoreSchemaHandler
from pydantic_core import CoreSchema, core_schema

from clickbus.settings.values import invalid


@dataclass(frozen=True, slots=True)
class Doc:
    """A setting's one-line meaning, its environment override, and an example when it has no default."""

    text: str
    env: str | None = None
    example: object = None


@dataclass(frozen=True, slots=True)
class Tables:
    """`[NAME.KEY]` tables, each validated as the item type with KEY copied into its field `key_field`.

    With `numbered`, keys must be numbers and the result is a `{number: item}` mapping; otherwise it is a tuple.
    """

    key_field: str
    numbered: str | None = None  # what the number is, for the message: "member id"

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        item = [a for a in get_args(source) if a is not Ellipsis][-1]
        key: Any = Annotated[int, _NumericKey(self.numbered)] if self.numbered else str
        tables = handler.generate_schema(dict[key, item])  # type: ignore[valid-type]
        keep = dict if self.numbered else lambda items: tuple(items.values())
        after = core_schema.no_info_after_validator_function(keep, tables)
        return core_schema.no_info_before_validator_function(self._copy_keys, after)

    def _copy_keys(self, raw: object) -> object:
        if not isinstance(raw, Mapping):
            return raw
        for key, table in raw.items():
            if isinstance(table, Mapping) and self.key_field in table:  # the table's key says it; nothing may differ
                raise invalid("unknown key", at=f"{key}.{self.key_field}")
        return {k: self._with_key(k, v) if isinstance(v, Mapping) else v for k, v in raw.items()}

    def _with_key(self, key: str, table: Mapping[str, Any]) -> dict[str, Any]:
        if not self.numbered:
            return {**table, self.key_field: key}
        # a key that is not a number is reported on the key itself; 0 keeps the table from a second report
        return {**table, self.key_field: int(key) if key.isdigit() else 0}


@dataclass(frozen=True, slots=True)
class _NumericKey:
    what: str | None

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_plain_validator_function(self._parse)

    def _parse(self, key: object) -> int:
        if not isinstance(key, str) or not key.isdigit():
            raise invalid(f"expected a numeric {self.what}")
        return int(key)


@dataclass(frozen=True, slots=True)
class Field:
    """One declared setting: its dotted path, type (without Annotated), doc, default and `Tables` marker."""

    path: str
    name: str
    kind: Any
    doc: Doc | None
    default: Any
    tables: Tables | None


def fields_of(cls: type, prefix: str = "") -> list[Field]:
    """The fields of one settings dataclass, in declaration order."""
    hints = get_type_hints(cls, include_extras=True)
    return [_field(f, hints[f.name], prefix) for f in dataclasses.fields(cls)]


def walk(cls: type, prefix: str = "") -> Iterator[Field]:
    """Every field of a settings dataclass and of its tables, depth first."""
    for f in fields_of(cls, prefix):
        yield f
        if is_table(f.kind):
            yield from walk(f.kind, f.path + ".")


def _field(f: dataclasses.Field[Any], hint: Any, prefix: str) -> Field:
    extras = getattr(hint, "__metadata__", ())
    docs = [m for m in extras if isinstance(m, Doc)]
    tables = [m for m in extras if isinstance(m, Tables)]
    kind = get_args(hint)[0] if get_origin(hint) is Annotated else hint
    return Field(prefix + f.name, f.name, kind, docs[0] if docs else None, _default(f), tables[0] if tables else None)


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


@functools.cache
def is_table(kind: Any) -> bool:
    """Whether a type is a settings table: a dataclass with documented settings (HostPort is a value)."""
    if not (isinstance(kind, type) and dataclasses.is_dataclass(kind)):
        return False
    hints = get_type_hints(kind, include_extras=True).values()
    return any(isinstance(m, Doc) for hint in hints for m in getattr(hint, "__metadata__", ()))


def item_table(kind: Any) -> type | None:
    """The table type inside `Mapping[K, X]` or `tuple[X, ...]` (X possibly Annotated), or None."""
    args = [a for a in get_args(kind) if a is not Ellipsis]
    item = args[-1] if args else None
    item = get_args(item)[0] if get_origin(item) is Annotated else item
    return item if is_table(item) else None


def env_overrides(cls: type) -> dict[str, str]:
    """`{environment variable: dotted key}` for every setting declared with `env=`."""
    return {f.doc.env: f.path for f in walk(cls) if f.doc and f.doc.env}
