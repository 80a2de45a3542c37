"""The hostile suite's harness: a real `clickbus run`, requests over aiohttp or raw sockets, one tally per category.

One way to start a service (`start_service`, `serving`), one way to speak raw sockets
(`RawConnection`, `exchange`, `request`), one way to send a request as given over HTTP (`fetch`),
one `Answer` for both, and one `Tally`. Every category counts attempts, `302`s to a host nobody
signed (judged by a WHATWG URL parser's idea of the `Location` host, as a browser would follow
it), `5xx`s and hangs (no answer within `HANG_S`), prints one summary line, and asserts the
must-be-zero counts are zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import re
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
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
RAW_HOST = "clickbus.test"  # the Host of `request`'s raw requests
SIGNED_HOST = "shop.example"
LANDING = f"https://{SIGNED_HOST}/landing"
AD = AdContext(member_id=13, auction_id_64=1, landing_url=LANDING, redirect_hosts=(SIGNED_HOST,))
SUMMARY_DIR_ENV = "CLICKBUS_TEST_SUMMARY_DIR"  # where workers of `pytest -n N` leave their SUMMARY lines
SUMMARY: list[str] = []  # every category's line, printed again in pytest's terminal summary
_STATUS = re.compile(rb"HTTP/\d\.\d (\d{3})")
_HEAD_END = b"\r\n\r\n"
SERVICE_TABLES = (
    f'[campaigns.{CAMPAIGN}]\nmember_id = 13\nplacements = ["header_banner"]\n'
    f'[api_keys.hostile]\nsha256 = "{hashlib.sha256(API_KEY.encode()).hexdigest()}"\nrate_per_s = 100000\n'
)


@dataclass(frozen=True, slots=True)
class Answer:
    """A status (None when the connection closed without one), the headers and body, and whether it hung."""

    status: int | None
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    hung: bool = False
    raw: bytes = b""  # every byte a raw socket read (empty from aiohttp)

    @classmethod
    def parse(cls, raw: bytes, *, hung: bool = False) -> Answer:
        """The first final answer in what a raw socket read (interim `1xx` answers skipped)."""
        while re.match(rb"HTTP/\d\.\d 1\d\d ", raw) and _HEAD_END in raw:
            raw = raw.partition(_HEAD_END)[2]
        head, _, body = raw.partition(_HEAD_END)
        status = _STATUS.match(raw)
        lines = head.decode("latin-1").split("\r\n")[1:]
        headers = tuple((k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in lines) if k)
        return cls(int(status.group(1)) if status else None, headers, body, hung, raw)

    @property
    def head(self) -> str:
        """The status line and headers as a raw socket read them."""
        return self.raw.partition(_HEAD_END)[0].decode("latin-1")

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    @property
    def location(self) -> str | None:
        return self.header("Location")

    @property
    def retry_after(self) -> str | None:
        return self.header("Retry-After")


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


def to_signed_host(location: str) -> bool:
    """The default judge: a browser following `location` goes to the signed host or below."""
    return under(browser_host(location), (SIGNED_HOST,))


@dataclass
class Tally:
    """The counts of one category; a `302` may go only where `judge(location)` says it may."""

    category: str
    judge: Callable[[str], bool] = to_signed_host
    attempts: int = 0
    unsigned_302: int = 0
    server_errors: int = 0
    hangs: int = 0
    unexpected: int = 0  # answers outside what the category expects (its own must-be-zero count)
    documented_5xx: frozenset[int] = frozenset()  # e.g. 503 with Retry-After when the log cannot take a record
    failures: list[str] = field(default_factory=list)
    notes: dict[str, int] = field(default_factory=dict)  # the category's own counts, printed after the standard ones

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
        ) + "".join(f" {name}={count}" for name, count in self.notes.items())
        print("\n" + line)
        SUMMARY.append(line)
        assert self.attempts > 0
        counts = (self.unsigned_302, self.server_errors, self.hangs, self.unexpected)
        assert counts == (0, 0, 0, 0), self.failures[:10]


def start_service(directory: Path, *, edge: str = "", tables: str = "") -> Service:
    """`clickbus run` (edge only) with a campaign and an API key for server clicks, plus `edge` keys and `tables`."""
    # the raw requests' `Host` (see `request`) is a name the internal listener must be told it answers to
    admin_hosts = f'admin_hosts = ["{RAW_HOST}"]\n'
    return Service(directory, extra=admin_hosts + edge + SERVICE_TABLES + tables).start()


def serving(factory: pytest.TempPathFactory, name: str, *, edge: str = "", tables: str = "") -> Iterator[Service]:
    """A module fixture's body: `start_service` in a fresh directory, stopped afterwards."""
    running = start_service(factory.mktemp(name), edge=edge, tables=tables)
    yield running
    running.stop()


def insert_url(service: Service) -> str:
    """Where insertion is served: the internal listener."""
    return service.admin_url + "/v1/insert"


def click_path(service: Service, ad: AdContext = AD) -> str:
    """A click path signed with the service's own key."""
    return inserter(service).click_url(ad).removeprefix(service.url)


def inserter(service: Service) -> Inserter:
    """An inserter with the service's own keys and public URL."""
    return Inserter(load_keyring(service.config), service.url, ttl_s=3600)


async def fetch(session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> Answer:
    """One request sent exactly as given (no re-encoding of the URL), never following redirects."""
    try:
        async with asyncio.timeout(HANG_S):
            async with session.request(method, YURL(url, encoded=True), allow_redirects=False, **kwargs) as response:
                body = await response.read()
                return Answer(response.status, tuple(response.headers.items()), body)
    except TimeoutError:
        return Answer(None, hung=True)
    except aiohttp.ClientError:  # the server closed a connection it could not parse
        return Answer(None)


def request(method: str, path: str, *, headers: Mapping[str, str | bytes] | None = None, body: bytes = b"") -> bytes:
    """An HTTP/1.1 request asking the server to close after answering; `headers` add to or replace the defaults."""
    fields: dict[str, str | bytes] = {"Host": RAW_HOST, "Connection": "close", **(headers or {})}
    if body:
        fields["Content-Length"] = str(len(body))
    head = b"".join(
        k.encode() + b": " + (v if isinstance(v, bytes) else v.encode("latin-1")) + b"\r\n" for k, v in fields.items()
    )
    return f"{method} {path} HTTP/1.1\r\n".encode("latin-1") + head + b"\r\n" + body


def _bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("latin-1")


class RawConnection:
    """One TCP connection to a listener: send bytes, read whole answers, or wait for the server to close it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._buffer = b""

    async def send(self, data: bytes) -> bool:
        """Send `data`; False when the server has already closed the connection."""
        try:
            self._writer.write(data)
            await self._writer.drain()
        except (ConnectionError, OSError):
            return False
        return True

    async def answer(self, limit_s: float = HANG_S) -> Answer:
        """The next whole answer (its head, and its body up to `Content-Length`), or what came before a close."""
        try:
            async with asyncio.timeout(limit_s):
                while (whole := answer_length(self._buffer)) is None and await self._read():
                    pass
        except TimeoutError:
            return Answer.parse(self._buffer, hung=True)
        end = len(self._buffer) if whole is None else whole
        raw, self._buffer = self._buffer[:end], self._buffer[end:]
        return Answer.parse(raw)

    async def closed(self, limit_s: float) -> Answer:
        """Everything the server sends until it closes; `hung` when it has not closed within `limit_s`."""
        try:
            async with asyncio.timeout(limit_s):
                while await self._read():
                    pass
        except TimeoutError:
            return Answer.parse(self._buffer, hung=True)
        return Answer.parse(self._buffer)

    async def _read(self) -> bool:
        try:
            chunk = await self._reader.read(65536)
        except (ConnectionError, OSError):
            return False
        self._buffer += chunk
        return bool(chunk)

    def half_close(self) -> None:
        """Send a FIN: this side will send nothing more, and still reads."""
        self._writer.write_eof()

    def reset(self) -> None:
        """Hang up with a RST (SO_LINGER 0), as a crashed or hostile client does."""
        self._writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._writer.transport.abort()

    def close(self) -> None:
        self._writer.close()


def answer_length(buffer: bytes) -> int | None:
    """How many bytes of `buffer` the first answer takes, None until it is whole (interim `1xx` answers skipped)."""
    start = 0
    while (end := buffer.find(_HEAD_END, start)) >= 0:
        head = buffer[start:end]
        status = _STATUS.match(head)
        if status and status.group(1).startswith(b"1"):
            start = end + len(_HEAD_END)
            continue
        declared = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.IGNORECASE)
        body_end = end + len(_HEAD_END) + (int(declared.group(1)) if declared else 0)
        if declared is None and status and status.group(1) not in (b"204", b"304"):
            return None  # no length: the body ends at the close
        return body_end if len(buffer) >= body_end else None
    return None


@contextlib.asynccontextmanager
async def connection(port: int) -> AsyncIterator[RawConnection]:
    """A raw connection to 127.0.0.1:`port`, closed afterwards."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    raw = RawConnection(reader, writer)
    try:
        yield raw
    finally:
        raw.close()


async def exchange(port: int, payload: bytes, *, limit_s: float = HANG_S) -> Answer:
    """`payload` on a fresh connection; the first whole answer (or what came before the server closed)."""
    async with connection(port) as raw:
        await raw.send(payload)
        return await raw.answer(limit_s)


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
