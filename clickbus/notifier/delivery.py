"""One delivery attempt: POST the Xandr `click_request` to a bidder's `click_uri`.

The body is exactly `{"click_request": {...}}`. Each request carries the
Standard Webhooks headers `webhook-id` (the click id, so a bidder can drop
duplicates) and `webhook-timestamp`, plus `webhook-signature` when the bidder
has a secret. Redirects are not followed and at most `cap` bytes of the answer
are read. The answer is classified here; what to do about it is `bidders.py`'s.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import aiohttp
import orjson
from standardwebhooks.webhooks import Webhook

from clickbus import __version__
from clickbus.errors import AddressRefused
from clickbus.notifier.retry import parse_retry_after
from clickbus.records import ClickRecord

USER_AGENT = f"clickbus/{__version__}"  # what bidders see (README: What a bidder receives)
RETRYABLE_4XX = frozenset({408, 429})
GONE = 410
MAX_RESPONSE_FIELD_CHARS = 4096


class Verdict(StrEnum):
    """What an attempt's answer means for the click."""

    DELIVERED = "delivered"
    RETRY = "retry"
    REJECTED = "rejected"  # 3xx or 4xx: the bidder will not take it; dead-letter
    GONE = "gone"  # 410: the bidder's endpoint is gone; disable the bidder
    REFUSED = "refused"  # the address is internal and the bidder may not use one
    HELD = "held"  # not attempted: the bidder's breaker is open, or no slot freed up in time


@dataclass(frozen=True, slots=True)
class Attempt:
    """The result of one POST."""

    verdict: Verdict
    status: int | None
    latency_ms: float
    error: str = ""
    click_response: Any = None
    retry_after_s: float | None = None


def body_of(click: ClickRecord) -> bytes:
    """The exact bytes a bidder receives."""
    return orjson.dumps(click.click_request())


def webhook_headers(click_id: str, body: bytes, signer: Webhook | None, now: float) -> dict[str, str]:
    """Standard Webhooks headers for one delivery (signature only with a secret), stamped `now`: every attempt anew."""
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": click_id,
        "webhook-timestamp": str(int(now)),
    }
    if signer is not None:
        stamp = datetime.fromtimestamp(int(now), tz=UTC)
        headers["webhook-signature"] = signer.sign(click_id, stamp, body.decode())
    return headers


def classify(status: int) -> Verdict:
    """2xx delivered; 5xx, 408 and 429 retried; 410 gone; any other answer rejected."""
    if 200 <= status < 300:
        return Verdict.DELIVERED
    if status >= 500 or status in RETRYABLE_4XX:
        return Verdict.RETRY
    return Verdict.GONE if status == GONE else Verdict.REJECTED


def click_response(raw: bytes) -> Any:
    """The bidder's optional `click_response`, if its answer is a JSON object carrying one."""
    if not raw:
        return None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return data.get("click_response") if isinstance(data, dict) else None


async def read_capped(content: aiohttp.StreamReader, cap: int) -> bytes:
    """At most `cap` bytes of a response body (`read(n)` alone may stop at a chunk boundary)."""
    chunks: list[bytes] = []
    size = 0
    while size < cap and (chunk := await content.read(cap - size)):
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


async def post(
    session: aiohttp.ClientSession,
    url: str,
    click: ClickRecord,
    *,
    signer: Webhook | None,
    timeout_s: float,
    cap: int,
) -> Attempt:
    """Make one attempt; never raises for what the network or the bidder does."""
    body = body_of(click)
    started = time.monotonic()

    def took() -> float:
        return round((time.monotonic() - started) * 1000, 2)

    try:
        headers = webhook_headers(click.click_id, body, signer, time.time())
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        async with session.post(url, data=body, headers=headers, allow_redirects=False, timeout=timeout) as resp:
            raw = await read_capped(resp.content, cap)
            verdict = classify(resp.status)
            retry_after = parse_retry_after(resp.headers.get("Retry-After"), time.time())
            return Attempt(verdict, resp.status, took(), "", click_response(raw), retry_after)
    except AddressRefused as exc:
        return Attempt(Verdict.REFUSED, None, took(), str(exc))
    except TimeoutError:
        return Attempt(Verdict.RETRY, None, took(), f"timeout after {timeout_s}s")
    except (aiohttp.ClientError, OSError) as exc:
        return Attempt(Verdict.RETRY, None, took(), f"{type(exc).__name__}: {exc}"[:MAX_RESPONSE_FIELD_CHARS])
