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
from collections import deque
from collections.abc import Mapping

import aiohttp
from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook
from yarl import URL

from clickbus.config import MemberConfig, NotifierConfig
from clickbus.errors import AddressRefused, ConfigError
from clickbus.metrics import BreakerState
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
        self.shown_state: BreakerState | None = None  # what the breaker gauge shows (the notifier sets it at start)
        self._free = member.concurrency  # slots nobody holds
        self._waiters: deque[tuple[float, asyncio.Future[bool]]] = deque()  # (since, waiter) per click, oldest first
        self._watch: asyncio.TimerHandle | None = None  # the bidder's one timer over all of them (see `_slot`)
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is not None and not self._session.closed:  # a notifier start tried again
            return
        resolver = None if self.member.allow_private else GuardedResolver()
        connector = aiohttp.TCPConnector(limit=self.member.concurrency, resolver=resolver, ttl_dns_cache=10)
        self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False, trust_env=False)

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
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
                self._release()
        finally:
            self.load -= 1

    async def _slot(self) -> bool:
        """Take a concurrency slot; give up once `slot_wait_s` passed without the bidder answering anything.

        A healthy bidder draining a burst keeps answering, so its clicks keep waiting (at most
        `max_load` of them); a stuck one answers nothing, so its clicks are parked quickly. One timer
        per bidder watches all its waiting clicks (`_check`), where a timeout per click armed and
        cancelled a timer for every click that waited.
        """
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return True
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiters.append((time.monotonic(), waiter))
        if self._watch is None:
            self._arm(self.slot_wait_s)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.result():  # handed a slot as it was cancelled
                self._release()
            raise

    def _release(self) -> None:
        """Hand the slot to the oldest click still waiting, or free it."""
        while self._waiters:
            _, waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(True)
                return
        self._free += 1

    def _arm(self, delay_s: float) -> None:
        self._watch = asyncio.get_running_loop().call_later(delay_s, self._check)

    def _check(self) -> None:
        """Give up the clicks that have waited `slot_wait_s` while the bidder answered nothing for as long.

        Then wake again when the oldest click left could be given up: `slot_wait_s` after it began to wait
        or after the bidder's latest answer, whichever is later.
        """
        self._watch = None
        waiters, wait_s = self._waiters, self.slot_wait_s
        now = time.monotonic()
        silent = now - self.last_answer > wait_s
        while waiters and (waiters[0][1].done() or (silent and now - waiters[0][0] >= wait_s)):
            _, waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(False)
        if waiters:
            self._arm(max(waiters[0][0], self.last_answer) + wait_s - now)


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
