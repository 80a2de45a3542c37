"""The hostile suite's harness: one real `clickbus run`, requests over aiohttp and raw sockets, a tally per category.

Every category counts attempts, `302`s to a host nobody signed (judged by a WHATWG URL parser's idea
of the `Location` host, as a browser would follow it), `5xx`s and hangs (no answer within
`HANG_S`), prints one summary line, and asserts the must-be-zero counts are zero.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from ada_url import URL, idna_to_ascii
from yarl import URL as YURL

from clickbus.creative import Inserter
from clickbus.keystore import load_keyring
from clickbus.tokens import AdContext
from tests.support.service import Service

HANG_S = 5.0
CONCURRENCY = 16
API_KEY = "cbk_hostile-suite-publisher"
CAMPAIGN = 1
SIGNED_HOST = "shop.example"
LANDING = f"https://{SIGNED_HOST}/landing"
AD = AdContext(member_id=13, auction_id_64=1, landing_url=LANDING, redirect_hosts=(SIGNED_HOST,))
SUMMARY: list[str] = []  # every category's line, printed again in pytest's terminal summary
_STATUS = re.compile(rb"HTTP/\d\.\d (\d{3})")
SERVICE_TOML = (
    f'[campaigns.{CAMPAIGN}]\nmember_id = 13\nplacements = ["header_banner"]\n'
    f'[api_keys.hostile]\nsha256 = "{hashlib.sha256(API_KEY.encode()).hexdigest()}"\nrate_per_s = 100000\n'
)


@dataclass(frozen=True, slots=True)
class Answer:
    """A status (None when the connection closed without one), the `Location` if any, and whether it hung."""

    status: int | None
    location: str | None = None
    hung: bool = False
    raw: bytes = b""  # what a raw socket read; from aiohttp, the body
    retry_after: str | None = None


def browser_host(url: str) -> str | None:
    """The host a browser would go to for `url` (WHATWG), None when a browser would not follow it."""
    try:
        return URL(url).hostname
    except ValueError:
        return None


def said_host(url: str) -> str | None:
    """The host `url` spells out (RFC 3986 authority, IDNA to ASCII, IPv6 canonical), the way a reader sees it."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    if not host:
        return None
    if ":" in host:
        try:
            return f"[{ipaddress.IPv6Address(host)}]"
        except ValueError:
            return None
    return idna_to_ascii(host).decode("ascii", "replace") if not host.isascii() else host


def under(host: str | None, allowed: Iterable[str]) -> bool:
    return host is not None and any(host == h or host.endswith("." + h) for h in allowed)


@dataclass
class Tally:
    """The counts of one category; a `302` may go only where `judge(location)` says it may."""

    category: str
    judge: Callable[[str], bool] = lambda location: under(browser_host(location), (SIGNED_HOST,))
    attempts: int = 0
    unsigned_302: int = 0
    server_errors: int = 0
    hangs: int = 0
    unexpected: int = 0  # answers outside what the category expects (its own must-be-zero count)
    documented_5xx: frozenset[int] = frozenset()  # e.g. 503 with Retry-After when the log cannot take a record
    failures: list[str] = field(default_factory=list)

    def count(self, answer: Answer, what: str, expected: Iterable[int] | None = None) -> Answer:
        """Count one attempt; remember what broke a must-be-zero count."""
        self.attempts += 1
        if answer.hung:
            self._fail("hangs", f"hang: {what}")
        if answer.status is not None and answer.status >= 500 and answer.status not in self.documented_5xx:
            self._fail("server_errors", f"{answer.status}: {what}")
        if answer.status == 302 and not (answer.location is not None and self.judge(answer.location)):
            self._fail("unsigned_302", f"302 to {answer.location!r}: {what}")
        if expected is not None and answer.status not in set(expected) and not answer.hung:
            self._fail("unexpected", f"{answer.status} not in {sorted(expected)}: {what}")
        return answer

    def _fail(self, counter: str, message: str) -> None:
        setattr(self, counter, getattr(self, counter) + 1)
        self.failures.append(message[:300])

    def report(self) -> None:
        """Print the summary line (again at the end of the run) and assert that every must-be-zero count is zero."""
        line = (
            f"[hostile] {self.category}: attempts={self.attempts} 302-unsigned={self.unsigned_302} "
            f"5xx={self.server_errors} hangs={self.hangs} unexpected={self.unexpected}"
        )
        print("\n" + line)
        SUMMARY.append(line)
        assert self.attempts > 0
        counts = (self.unsigned_302, self.server_errors, self.hangs, self.unexpected)
        assert counts == (0, 0, 0, 0), self.failures[:10]


def start_service(directory: Path) -> Service:
    """`clickbus run` (edge only) with a campaign and an API key for server clicks."""
    return Service(directory, extra=SERVICE_TOML).start()


def insert_url(service: Service) -> str:
    """Where insertion is served: the internal listener."""
    return service.admin_url + "/v1/insert"


def click_path(service: Service, ad: AdContext = AD) -> str:
    """A click path signed with the service's own key."""
    inserter = Inserter(load_keyring(service.config), service.url, ttl_s=3600)
    return inserter.click_url(ad).removeprefix(service.url)


async def fetch(session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> Answer:
    """One request sent exactly as given (no re-encoding of the URL), never following redirects."""
    try:
        async with asyncio.timeout(HANG_S):
            async with session.request(method, YURL(url, encoded=True), allow_redirects=False, **kwargs) as response:
                body = await response.read()
                headers = response.headers
                return Answer(
                    response.status, headers.get("Location"), raw=body, retry_after=headers.get("Retry-After")
                )
    except TimeoutError:
        return Answer(None, hung=True)
    except aiohttp.ClientError:  # the server closed a connection it could not parse
        return Answer(None)


async def send_raw(port: int, payload: bytes) -> Answer:
    """`payload` on a fresh connection; read up to the end of the answer's head (or the close)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    raw = b""
    try:
        writer.write(payload)
        async with asyncio.timeout(HANG_S):
            while b"\r\n\r\n" not in raw and (chunk := await reader.read(65536)):
                raw += chunk
    except TimeoutError:
        return Answer(None, hung=True, raw=raw)
    except ConnectionResetError:
        pass
    finally:
        writer.close()
    status = _STATUS.match(raw)
    location = re.search(rb"\r\nLocation: ([^\r\n]*)", raw, re.IGNORECASE)
    return Answer(
        int(status.group(1)) if status else None,
        location.group(1).decode("latin-1") if location else None,
        raw=raw,
    )


async def run_all(attempts: Iterable[Callable[[], Awaitable[None]]]) -> None:
    """Run the attempts with at most `CONCURRENCY` at once."""
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(attempt: Callable[[], Awaitable[None]]) -> None:
        async with gate:
            await attempt()

    await asyncio.gather(*(one(a) for a in attempts))


def session() -> aiohttp.ClientSession:
    """A client session that sends a browser's user agent (the notifier drops crawlers) and keeps few connections."""
    return aiohttp.ClientSession(
        headers={"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0"},
        connector=aiohttp.TCPConnector(limit=CONCURRENCY),
    )
