"""Click and impression records: what the edge appends and the notifier reads.

A click record carries every Xandr `click_request` field plus clickbus's own
context. Records are serialized once, with orjson, as plain JSON so that
standard tools (kcat, jq) read the topics.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import re
import socket
import time
from dataclasses import dataclass, fields
from typing import Any, ClassVar, TypeVar

import orjson

from clickbus.log.port import HEADER_KIND, HEADER_SCHEMA
from clickbus.tokens import Token

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
OPTIONAL_CLICK_REQUEST_FIELDS = frozenset({"userdata_json", "custom_notify_data"})  # Xandr scope "some"
R = TypeVar("R", bound="_Record")
_V4_MAPPED = bytes(10) + b"\xff\xff"
MAX_KEY_ID_CHARS = 64  # longer user and session ids enter the dedup key hashed
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


def clean_text(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, each byte that was not UTF-8 recorded as U+FFFD.

    aiohttp decodes header bytes with `surrogateescape`, and orjson refuses the lone
    surrogates that leaves: `caf\\xe9` would fail the record, so it is recorded as `caf\ufffd`.
    """
    text = text[:limit]
    if text.isascii():
        return text
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that no byte produced
        raw = text.encode("utf-8", "replace")
    return raw.decode("utf-8", "replace")


def device_key(user_agent: str) -> str:
    """A short stable key for the device a request came from (a hash of its user agent)."""
    return hashlib.blake2b(user_agent.encode("utf-8", "replace"), digest_size=6).hexdigest()


def address_key(secret: bytes, address: str | None) -> str:
    """A keyed hash of the full client address ("" when there is none): tells apart users behind one /24.

    Keyed under a server secret so that the record never holds anything from which the address
    can be read back or tried against a list of addresses. Keyed BLAKE2b is a MAC ("a faster and
    simpler replacement for HMAC", hashlib's documentation): 1.4 us here, where HMAC-SHA256 took 4.9.
    """
    packed = _packed(address or "")
    return hashlib.blake2b(packed, key=secret, digest_size=12).hexdigest() if packed else ""


def _packed(address: str) -> bytes:
    """The address's bytes (IPv4-mapped IPv6 as IPv4, zone dropped); b"" when it is not an address."""
    try:
        return socket.inet_pton(socket.AF_INET, address)  # the common case: ~20x cheaper than ipaddress
    except (OSError, ValueError):
        pass
    try:
        packed = socket.inet_pton(socket.AF_INET6, address.partition("%")[0])
    except (OSError, ValueError):
        return b""
    return packed[12:] if packed.startswith(_V4_MAPPED) else packed


def ad_key(token: Token) -> str:
    """The ad impression a token names: its auction and creative; without an auction id, the token itself."""
    ad = token.ad
    if ad.auction_id_64:
        return f"{ad.auction_id_64}.{ad.creative_id}"
    # No auction id: only the signed token (issue time, context, landing) tells this insertion from another.
    return f"t{hashlib.blake2b(orjson.dumps(token), digest_size=8).hexdigest()}.{ad.creative_id}"


def _named(kind: str, text: str) -> str:
    """A publisher-given id in a key: as it is when short, else its hash (keys stay small; ids come from outside)."""
    if len(text) <= MAX_KEY_ID_CHARS:
        return f"{kind}:{text}"
    return f"{kind.upper()}:{hashlib.blake2b(text.encode('utf-8', 'replace'), digest_size=16).hexdigest()}"


class _Record:
    """Shared serialization for the record dataclasses."""

    KIND: ClassVar[str]
    __slots__ = ()

    def to_json(self) -> bytes:
        return orjson.dumps(self)

    @classmethod
    def from_json(cls: type[R], raw: bytes) -> R:
        data = orjson.loads(raw)
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in known})

    def headers(self) -> tuple[tuple[str, bytes], ...]:
        return ((HEADER_KIND, self.KIND.encode()), (HEADER_SCHEMA, str(SCHEMA_VERSION).encode()))

    def record_id(self) -> str:
        """The click's or impression's own id."""
        data: Any = self
        return str(data.click_id if self.KIND == "click" else data.impression_id)

    def dedup_key(self) -> bytes:
        """Records that are duplicates of one another share this key: `member/user/device/ad` (README: dedup rule)."""
        data: Any = self
        if data.source == Source.SERVER:  # no user is known: each server-side click stands alone
            return f"{data.member_id}/server/{data.click_id}".encode()
        return f"{data.member_id}/{self._user()}/{data.device}/{self._ad()}".encode()

    def _user(self) -> str:
        """The publisher's user id, else the auction's user, else the session, else the full address's hash."""
        data: Any = self
        if data.user_id:
            return _named("u", data.user_id)
        if data.user_id_64:
            return f"x:{data.user_id_64}"
        if data.session_id:
            return _named("s", data.session_id)
        if data.client_key:
            return f"a:{data.client_key}"
        return f"r:{self.record_id()}"  # nothing names the user (no address, or a record from before client_key)

    def _ad(self) -> str:
        data: Any = self
        if data.ad_key:
            return str(data.ad_key)
        if data.auction_id_64:  # a record from before ad_key
            return f"{data.auction_id_64}.{data.creative_id}"
        return f"r:{self.record_id()}"


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
    ad_key: str = ""
    client_key: str = ""

    def click_request(self) -> dict[str, Any]:
        """The body a bidder receives, exactly as in the Xandr reference: optional fields only when given."""
        body = {name: getattr(self, name) for name in CLICK_REQUEST_FIELDS}
        for name in OPTIONAL_CLICK_REQUEST_FIELDS:
            if not body[name]:
                del body[name]
        return {"click_request": body}


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
    ad_key: str = ""
    client_key: str = ""
