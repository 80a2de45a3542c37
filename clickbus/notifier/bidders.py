"""A member's bidder as the notifier sees it: its HTTP client, limits and breaker.

Each bidder has its own client session (so its connection pool, DNS guard and
concurrency limit are its own: a slow bidder only ever fills its own pool),
an in-flight limit beyond which clicks are parked instead of queued, a
circuit breaker, and a `disabled` reason once it answered 410 or is switched
off in configuration.
"""

from __future__ import annotations

import asyncio
import binascii
import logging
import time
from collections.abc import Mapping

import aiohttp
from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook
from yarl import URL

from clickbus.config import MemberConfig, NotifierConfig
from clickbus.errors import AddressRefused, ConfigError
from clickbus.notifier.addresses import GuardedResolver, check_literal
from clickbus.notifier.breaker import Breaker
from clickbus.notifier.delivery import Attempt, Verdict, post
from clickbus.records import ClickRecord

logger = logging.getLogger(__name__)

DISABLED_BY_CONFIG = "disabled in configuration"
SATURATED = "bidder saturated"
BREAKER_OPEN = "circuit breaker open"


def signer_of(member: MemberConfig) -> Webhook | None:
    """The Standard Webhooks signer for the member's secret (`whsec_` + base64), if it has one."""
    if member.secret is None:
        return None
    try:
        return Webhook(member.secret.value.decode())
    except (binascii.Error, ValueError, EmptyWebhookSecretError):
        raise ConfigError([f"members.{member.member_id}.secret: expected whsec_ followed by base64"]) from None


def literal_refusal(member: MemberConfig) -> str | None:
    """Why the member's click_uri is refused outright (an internal IP literal), if it is."""
    if member.allow_private:
        return None
    try:
        check_literal(URL(member.click_uri).raw_host or "")
    except AddressRefused as exc:
        return str(exc)
    return None


class Bidder:
    """Delivery state for one member's click handler."""

    def __init__(self, member: MemberConfig, settings: NotifierConfig) -> None:
        self.member = member
        self.signer = signer_of(member)
        self.breaker = Breaker(settings.breaker_failures, settings.breaker_cooldown_s)
        self.max_load = member.concurrency * (1 + settings.queue_per_slot)
        self.cap = settings.response_cap_bytes
        self.slot_wait_s = settings.slot_wait_s
        self.refusal = literal_refusal(member)
        self.disabled: str | None = None if member.enabled else DISABLED_BY_CONFIG
        self.load = 0
        self.last_answer = 0.0  # monotonic time of the bidder's latest HTTP answer, any status
        self._slots = asyncio.Semaphore(member.concurrency)
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is not None and not self._session.closed:  # a notifier start tried again
            return
        resolver = None if self.member.allow_private else GuardedResolver()
        connector = aiohttp.TCPConnector(limit=self.member.concurrency, resolver=resolver, ttl_dns_cache=10)
        self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False, trust_env=False)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def saturated(self) -> bool:
        """True when as many clicks as it may hold are already waiting or in flight."""
        return self.load >= self.max_load

    def disable(self, why: str) -> None:
        if self.disabled is None:
            logger.error("bidder of member %d disabled: %s", self.member.member_id, why)
        self.disabled = why

    async def attempt(self, click: ClickRecord) -> Attempt:
        """POST `click` once, within the bidder's concurrency limit, unless its breaker holds it back."""
        if self.refusal is not None:
            return Attempt(Verdict.REFUSED, None, 0.0, self.refusal)
        assert self._session is not None, "bidder not started"
        self.load += 1
        try:
            if not await self._slot():
                return Attempt(Verdict.HELD, None, 0.0, SATURATED)
            try:
                if not self.breaker.allow():  # checked once a slot is ours: earlier failures may have opened it
                    return Attempt(Verdict.HELD, None, 0.0, BREAKER_OPEN)
                result = await post(
                    self._session,
                    self.member.click_uri,
                    click,
                    signer=self.signer,
                    timeout_s=self.member.timeout_s,
                    cap=self.cap,
                )
                if result.status is not None:
                    self.last_answer = time.monotonic()
                return result
            finally:
                self._slots.release()
        finally:
            self.load -= 1

    async def _slot(self) -> bool:
        """Take a concurrency slot; give up once `slot_wait_s` passed without the bidder answering anything.

        A healthy bidder draining a burst keeps answering, so its clicks keep waiting (at most
        `max_load` of them); a stuck one answers nothing, so its clicks are parked quickly.
        """
        if not self._slots.locked():  # a free slot and nobody queued for one: no timer to arm and cancel
            await self._slots.acquire()
            return True
        while True:
            try:
                async with asyncio.timeout(self.slot_wait_s):
                    await self._slots.acquire()
                return True
            except TimeoutError:
                if time.monotonic() - self.last_answer > self.slot_wait_s:
                    return False


def bidders_of(members: Mapping[int, MemberConfig], settings: NotifierConfig) -> dict[int, Bidder]:
    """One `Bidder` per configured member; raises `ConfigError` naming every bad secret."""
    problems: list[str] = []
    bidders = {}
    for member_id, member in members.items():
        try:
            bidders[member_id] = Bidder(member, settings)
        except ConfigError as exc:
            problems += exc.problems
    if problems:
        raise ConfigError(problems)
    return bidders
