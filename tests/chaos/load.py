"""Click load: signed click URLs, one unique auction_id_64 per request, and what each request got back.

The click id is chosen by the edge and lives only in the record, so each
request signs its own auction id into its token: the record it produced is
found again by that auction id. `DuplicatePairs` clicks one token twice
(true duplicates) on two edges, from auction ids of its own range.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field

import aiohttp

from clickbus.creative import Inserter
from clickbus.tokens import AdContext, Keyring
from tests.support.waiting import eventually

BROWSER_UA = "Mozilla/5.0 (Macintosh; U; Intel Mac OS X 10.5; en-US; rv:1.9.0.4) Gecko/2008102920 Firefox/3.0.4"
LANDING = "https://advertiser.example/landing"
FIRST_AUCTION = 1 << 40
FIRST_PAIR_AUCTION = 1 << 41  # true-duplicate pairs: never an auction id of a ClickLoad
NO_ANSWER = 0  # connection refused or reset, or timed out: the browser got nothing
REQUEST_TIMEOUT_S = 5.0
_auctions = itertools.count(FIRST_AUCTION)  # shared: no two loads in one process reuse an auction id
_pair_auctions = itertools.count(FIRST_PAIR_AUCTION)


async def click(session: aiohttp.ClientSession, url: str, referer: str | None = None) -> int:
    """One browser click on `url`: the status it got, or NO_ANSWER."""
    headers = {"User-Agent": BROWSER_UA} | ({"Referer": referer} if referer else {})
    try:
        async with session.get(url, headers=headers, allow_redirects=False) as response:
            return response.status
    except (TimeoutError, aiohttp.ClientError):
        await asyncio.sleep(0.05)  # the edge is down: do not spin
        return NO_ANSWER


@dataclass
class ClickLoad:
    """Clicks from `concurrency` workers, paced to `rate_per_s` when set; `statuses[auction]`: what came back."""

    base_url: str
    keyring: Keyring
    members: tuple[int, ...]
    concurrency: int = 8
    rate_per_s: float | None = None
    referer: str | None = None  # a long one makes big records (segments that roll sooner)
    statuses: dict[int, int] = field(default_factory=dict)
    paused: bool = False
    busy: int = 0
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _session: aiohttp.ClientSession | None = None
    _started: float = 0.0
    _paced: int = 0

    def __post_init__(self) -> None:
        self.inserter = Inserter(self.keyring, self.base_url, ttl_s=3600)

    async def start(self) -> ClickLoad:
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
        self._session = aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0))
        self._started = time.monotonic()
        self._tasks = [asyncio.create_task(self._worker()) for _ in range(self.concurrency)]
        return self

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        if self._session is not None:
            await self._session.close()

    async def pause(self) -> None:
        """Stop sending and wait for the requests in flight to be answered."""
        self.paused = True
        await eventually(lambda: not self.busy, timeout_s=20.0)

    def resume(self) -> None:
        self.paused = False
        self._started, self._paced = time.monotonic(), 0

    def answered(self) -> set[int]:
        return {auction for auction, status in self.statuses.items() if status == 302}

    def url(self, auction: int) -> str:
        member = self.members[auction % len(self.members)]
        ad = AdContext(member_id=member, auction_id_64=auction, user_id_64=auction, landing_url=LANDING)
        return self.inserter.click_url(ad)

    async def _worker(self) -> None:
        while not self._stop.is_set():
            if self.paused:
                await asyncio.sleep(0.01)
                continue
            await self._pace()
            if self.paused or self._stop.is_set():
                continue
            self.busy += 1
            try:
                await self._click(next(_auctions))
            finally:
                self.busy -= 1

    async def _pace(self) -> None:
        if self.rate_per_s is None:
            return
        due = self._started + self._paced / self.rate_per_s
        self._paced += 1
        await asyncio.sleep(max(0.0, due - time.monotonic()))

    async def _click(self, auction: int) -> None:
        assert self._session is not None
        self.statuses[auction] = NO_ANSWER
        self.statuses[auction] = await click(self._session, self.url(auction), self.referer)


@dataclass
class DuplicatePairs:
    """`rate_per_s` tokens, each clicked by one browser on one edge and again `gap_s` later on the next edge.

    `statuses[auction]`: what the two clicks got back; `clicked[auction]`: when (monotonic), in order.
    """

    load: ClickLoad  # signs the tokens, for its edge
    bases: tuple[str, ...]  # the edges' base URLs; pair n clicks first on bases[n % len], then on the next
    rate_per_s: float
    gap_s: float
    statuses: dict[int, list[int]] = field(default_factory=dict)
    clicked: dict[int, list[float]] = field(default_factory=dict)
    _session: aiohttp.ClientSession | None = None
    _pacer: asyncio.Task[None] | None = None
    _pairs: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> DuplicatePairs:
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
        self._session = aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0))
        self._pacer = asyncio.create_task(self._pace())
        return self

    async def stop(self) -> None:
        """Start no more pairs; let the ones begun click their second time."""
        if self._pacer is not None:
            self._pacer.cancel()
            await asyncio.gather(self._pacer, return_exceptions=True)
        await asyncio.gather(*self._pairs)
        if self._session is not None:
            await self._session.close()

    def answered_twice(self) -> set[int]:
        return {auction for auction, got in self.statuses.items() if got == [302, 302]}

    async def _pace(self) -> None:
        for n in itertools.count():
            task = asyncio.create_task(self._pair(n, next(_pair_auctions)))
            self._pairs.add(task)
            task.add_done_callback(self._pairs.discard)
            await asyncio.sleep(1 / self.rate_per_s)

    async def _pair(self, n: int, auction: int) -> None:
        assert self._session is not None
        path = self.load.url(auction).removeprefix(self.load.inserter.public_url)  # one token, either edge
        self.statuses[auction], self.clicked[auction] = [], []
        for i in range(2):
            if i:
                await asyncio.sleep(self.gap_s)
            self.clicked[auction].append(time.monotonic())
            self.statuses[auction].append(await click(self._session, self.bases[(n + i) % len(self.bases)] + path))
