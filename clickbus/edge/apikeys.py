"""API keys (server-side clicks, public insertion): stored only as SHA-256 hashes, checked in constant time.

`identify` always does the same work, whether the header is missing, malformed,
unknown or valid: hash what was presented (the empty string when nothing was)
and compare it with every configured hash.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Sequence
from typing import Generic, Protocol, TypeVar

from aiohttp import hdrs
from multidict import CIMultiDictProxy

from clickbus.config import ApiKeyConfig
from clickbus.edge.buckets import Buckets, MemoryBuckets

BEARER = "bearer "
KEY_PREFIX = "cbk_"
INSERT_KEY_PREFIX = "cbi_"
KEY_BYTES = 32


def bearer(authorization: str | None) -> str:
    """The credentials of an `Authorization: Bearer <key>` header; empty when there are none."""
    if authorization is None or authorization[: len(BEARER)].lower() != BEARER:
        return ""
    return authorization[len(BEARER) :].strip()


def authorization(headers: CIMultiDictProxy[str]) -> str | None:
    """The request's one `Authorization` header; None when there is none or more than one.

    With two, which one a proxy in front acted on is anyone's guess, so neither is believed.
    """
    values = headers.getall(hdrs.AUTHORIZATION, [])
    return values[0] if len(values) == 1 else None


def key_hash(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


class Hashed(Protocol):
    """A configured key: its name and the SHA-256 of its secret."""

    @property
    def name(self) -> str: ...

    @property
    def sha256(self) -> bytes: ...


K = TypeVar("K", bound=Hashed)


class ApiKeys(Generic[K]):
    """The configured keys of one kind (`ApiKeyConfig`, `InsertKeyConfig`), by hash."""

    def __init__(self, keys: Sequence[K]) -> None:
        self._keys = tuple(keys)

    def __bool__(self) -> bool:
        return bool(self._keys)

    def identify(self, authorization: str | None) -> K | None:
        """The key an `Authorization` header presents, or None; same work either way."""
        presented = bearer(authorization)
        digest = key_hash(presented)
        found = None
        for key in self._keys:
            if hmac.compare_digest(digest, key.sha256) and presented:
                found = key
        return found


class RateLimiter:
    """A token bucket per key: `rate_per_s` refill, bursts up to one second's worth (at least 1).

    The buckets live in this process until `share` puts them in a file all workers use.
    """

    def __init__(self, keys: Sequence[ApiKeyConfig]) -> None:
        self._slots = {key.name: (slot, key.rate_per_s) for slot, key in enumerate(keys)}
        self._buckets: Buckets = MemoryBuckets(len(self._slots))
        self._tokens = dict.fromkeys(self._slots, 0.0)

    def __bool__(self) -> bool:
        return bool(self._slots)

    def share(self, buckets: Buckets) -> None:
        """Keep the buckets in `buckets` from now on (e.g. `FileBuckets`, shared by every worker)."""
        self._buckets.close()
        self._buckets = buckets

    def close(self) -> None:
        self._buckets.close()

    def allow(self, name: str, now: float | None = None) -> bool:
        """Take one token from `name`'s bucket; False when it is empty."""
        slot, rate = self._slots[name]
        taken = self._buckets.take(slot, time.monotonic() if now is None else now, rate, _burst(rate))
        self._tokens[name] = taken.tokens
        return taken.allowed

    def give_back(self, name: str) -> None:
        """Return the token `allow` took from `name`, for a request that then failed (nothing was recorded)."""
        slot, rate = self._slots[name]
        self._buckets.give_back(slot, _burst(rate))

    def retry_after(self, name: str) -> int:
        """Whole seconds until `name` has a token again (at least 1), as of its last `allow`."""
        missing = 1.0 - self._tokens[name]
        return max(1, int(missing / self._slots[name][1] + 0.999))


def _burst(rate: float) -> float:
    return max(1.0, rate)


def new_api_key(prefix: str = KEY_PREFIX) -> tuple[str, str]:
    """A fresh random API key and the hex SHA-256 to put in configuration."""
    key = prefix + secrets.token_urlsafe(KEY_BYTES)
    return key, key_hash(key).hex()
