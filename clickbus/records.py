"""Click and impression records: what the edge appends and the notifier reads.

A click record carries every Xandr `click_request` field plus clickbus's own
context. Records are serialized once, with orjson, as plain JSON so that
standard tools (kcat, jq) read the topics. The edge, which records on every
click, pixel and beacon, writes that JSON with `encode` without building the
record (see there why); readers parse it back into the dataclasses.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import re
import time
from dataclasses import MISSING, dataclass, fields
from typing import Any, ClassVar, TypeVar

import orjson

from clickbus.log.port import HEADER_KIND, HEADER_SCHEMA

SCHEMA_VERSION = 1
CLICK_REQUEST_FIELDS = (
    "timestamp",
    "auction_id_64",
    "member_id",
    "user_id_64",
    "referer_url",
    "user_agent",
    "userdata_json",
    "custom_notify_data",
    "test",
)
R = TypeVar("R", bound="_Record")
_IPV4 = re.compile(r"(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)")


class Source:
    REDIRECT = "redirect"
    BEACON = "beacon"
    PIXEL = "pixel"
    SERVER = "server"


class Reason:
    """Why a record is invalid (valid records have no reason)."""

    EXPIRED = "expired"
    HEAD = "head"
    DUPLICATE = "duplicate"
    BOT = "bot"


@functools.lru_cache(maxsize=4)
def _xandr_second(second: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(second))


def xandr_timestamp(now: float) -> str:
    """`YYYY-MM-DD HH:MM:SS` in UTC, as in the Xandr click request."""
    return _xandr_second(int(now))


def truncate_ip(text: str | None) -> str:
    """Keep only the network part of a client address: /24 for IPv4, /48 for IPv6."""
    if text and _IPV4.fullmatch(text):  # the common case, without ipaddress's cost
        return text[: text.rindex(".")] + ".0"
    try:
        address = ipaddress.ip_address(text or "")
    except ValueError:
        return ""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)


@functools.lru_cache(maxsize=4096)  # browsers send a few thousand distinct user agents, over and over
def device_key(user_agent: str) -> str:
    """A short stable key for the device a request came from (a hash of its user agent)."""
    return hashlib.blake2b(user_agent.encode("utf-8", "replace"), digest_size=6).hexdigest()


def dedup_key(
    *,
    member_id: int,
    source: str,
    record_id: str,
    user_id_64: int,
    user_id: str,
    session_id: str,
    client_ip: str,
    device: str,
    creative_id: int,
) -> bytes:
    """Records that are duplicates of one another share this key (member, user, device, ad)."""
    if source == Source.SERVER:  # no user is known: each server-side click stands alone
        return f"{member_id}/server/{record_id}".encode()
    user = str(user_id_64) if user_id_64 else (user_id or session_id or client_ip)
    return f"{member_id}/{user}/{device}/{creative_id}".encode()


# Stands for a field without a default in `_Record.encode`'s template; orjson refuses to serialize it.
_REQUIRED: Any = object()


class _Record:
    """Shared serialization for the record dataclasses."""

    KIND: ClassVar[str]
    HEADERS: ClassVar[tuple[tuple[str, bytes], ...]]
    TEMPLATE: ClassVar[dict[str, Any]]  # every field in order, at its default
    __slots__ = ()

    def to_json(self) -> bytes:
        return orjson.dumps(self)

    @classmethod
    def encode(cls, **values: Any) -> bytes:
        """`cls(**values).to_json()`, byte for byte, without building the record.

        A frozen dataclass's `__init__` sets each field through `object.__setattr__` (about
        3 us for a click's 23 fields) and orjson reads a dataclass four times slower than a
        dict: on the edge, which records every click, pixel and beacon, that was 6 us each.
        A field missing or unknown raises, as the constructor would.
        """
        record = cls.TEMPLATE.copy()
        record.update(values)  # known names keep the template's (the dataclass's) order
        if len(record) != len(cls.TEMPLATE):
            raise TypeError(f"unknown {cls.KIND} record fields: {sorted(set(values) - set(cls.TEMPLATE))}")
        try:
            return orjson.dumps(record)
        except orjson.JSONEncodeError:
            missing = sorted(name for name, value in record.items() if value is _REQUIRED)
            if missing:
                raise TypeError(f"{cls.KIND} record fields missing: {missing}") from None
            raise  # a value JSON cannot hold (a lone surrogate): as to_json fails

    @classmethod
    def from_json(cls: type[R], raw: bytes) -> R:
        data = orjson.loads(raw)
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in known})

    def headers(self) -> tuple[tuple[str, bytes], ...]:
        return self.HEADERS

    def dedup_key(self) -> bytes:
        """Records that are duplicates of one another share this key (member, user, device, ad)."""
        data: Any = self
        return dedup_key(
            member_id=data.member_id,
            source=data.source,
            record_id=data.click_id if isinstance(self, ClickRecord) else data.impression_id,
            user_id_64=data.user_id_64,
            user_id=data.user_id,
            session_id=data.session_id,
            client_ip=data.client_ip,
            device=data.device,
            creative_id=data.creative_id,
        )


def headers_of(kind: str) -> tuple[tuple[str, bytes], ...]:
    """The log headers of every record of `kind`."""
    return ((HEADER_KIND, kind.encode()), (HEADER_SCHEMA, str(SCHEMA_VERSION).encode()))


def _prepare(cls: type[R]) -> type[R]:
    """Give a record class its headers and its `encode` template."""
    cls.HEADERS = headers_of(cls.KIND)
    cls.TEMPLATE = {f.name: _REQUIRED if f.default is MISSING else f.default for f in fields(cls)}  # type: ignore[arg-type]
    return cls


@_prepare
@dataclass(frozen=True, slots=True)
class ClickRecord(_Record):
    """One click, as recorded by the edge."""

    KIND: ClassVar[str] = "click"

    click_id: str
    timestamp: str
    auction_id_64: int
    member_id: int
    user_id_64: int
    referer_url: str
    user_agent: str
    userdata_json: str
    custom_notify_data: str
    test: bool
    source: str
    creative_id: int
    landing_url: str
    client_ip: str
    device: str
    pos: int = 0
    valid: bool = True
    reason: str | None = None
    user_id: str = ""
    session_id: str = ""
    campaign_id: int = 0
    placement: str = ""
    location: str = ""

    def click_request(self) -> dict[str, Any]:
        """The body a bidder receives, exactly as in the Xandr reference."""
        return {"click_request": {name: getattr(self, name) for name in CLICK_REQUEST_FIELDS}}


@_prepare
@dataclass(frozen=True, slots=True)
class ImpressionRecord(_Record):
    """One impression, from the pixel or a beacon."""

    KIND: ClassVar[str] = "impression"

    impression_id: str
    timestamp: str
    auction_id_64: int
    member_id: int
    user_id_64: int
    referer_url: str
    user_agent: str
    test: bool
    source: str
    creative_id: int
    client_ip: str
    device: str
    pos: int = 0
    valid: bool = True
    reason: str | None = None
    user_id: str = ""
    session_id: str = ""
