"""Answers written as bytes prepared once, byte for byte what aiohttp writes for the same `web.Response`.

The thin path (`clickbus.edge.thin`) answers without aiohttp's response objects. A `Reply` is
the status, headers and body of one of its answers; its bytes are prepared the first time each
kind of request needs them (HTTP version, kept alive or not, `HEAD` or not), and then only
`Location` (for a redirect) and `Date` are put in. The rules are aiohttp's (3.14.5), for the
statuses used here (none of 1xx, 204 or 304): the headers as given, then `Content-Length`
(left out for an empty body answered to `HEAD`), `Date`, and `Connection: keep-alive` (HTTP/1.0
kept alive) or `Connection: close` (HTTP/1.1 not kept alive); no `Server`; no body for `HEAD`.
`tests/edge/test_thin.py` holds them to aiohttp's own answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from http import HTTPStatus

from aiohttp import hdrs, web
from aiohttp.http_writer import HttpVersion, HttpVersion10, HttpVersion11
from multidict import CIMultiDict, CIMultiDictProxy

from clickbus.compat.aiohttp import http_date

_Kind = tuple[HttpVersion, bool, bool]  # version, kept alive, HEAD
_Parts = tuple[bytes, bytes, bytes]  # before the Location value, between it and the Date value, after the Date value

_dates: tuple[str, bytes] = ("", b"")  # aiohttp's Date text (the same object all second) and its bytes


def _date() -> bytes:
    global _dates
    text = http_date()
    if text is not _dates[0]:
        _dates = (text, text.encode("ascii"))
    return _dates[1]


class Reply:
    """An answer of fixed status, headers and body (and, with `location`, a `Location` header first)."""

    __slots__ = ("_body", "_headers", "_location", "_parts", "status")

    def __init__(
        self, status: int, headers: Sequence[tuple[str, str]] = (), body: bytes = b"", *, location: bool = False
    ) -> None:
        names = {name.lower() for name, _ in headers}
        if body and hdrs.CONTENT_TYPE.lower() not in names:
            raise ValueError("a body needs its Content-Type (aiohttp would add application/octet-stream)")
        if names & {"content-length", "date", "connection", "transfer-encoding"}:
            raise ValueError("Content-Length, Date and Connection are the reply's own")
        self.status = status
        self._headers = tuple(headers)
        self._body = body
        self._location = location
        self._parts: dict[_Kind, _Parts] = {}

    def written(self, request: web.BaseRequest, location: str = "") -> Written:
        """This reply to `request`, ready for aiohttp to write."""
        keep_alive = request.keep_alive
        kind = (request.version, keep_alive, request.method == hdrs.METH_HEAD)
        parts = self._parts.get(kind) or self._prepare(kind)
        data = parts[0] + location.encode() + parts[1] + _date() + parts[2]
        return Written(self.status, keep_alive, data)

    def _prepare(self, kind: _Kind) -> _Parts:
        version, keep_alive, head = kind
        status = f"HTTP/{version.major}.{version.minor} {self.status} {HTTPStatus(self.status).phrase}\r\n"
        lines = [f"{name}: {value}\r\n" for name, value in self._headers]
        if self._body or not head:
            lines.append(f"{hdrs.CONTENT_LENGTH}: {len(self._body)}\r\n")
        connection = ""
        if keep_alive and version == HttpVersion10:
            connection = f"{hdrs.CONNECTION}: keep-alive\r\n"
        elif not keep_alive and version == HttpVersion11:
            connection = f"{hdrs.CONNECTION}: close\r\n"
        before = status + (f"{hdrs.LOCATION}: " if self._location else "")
        between = ("\r\n" if self._location else "") + "".join(lines) + f"{hdrs.DATE}: "
        after = f"\r\n{connection}\r\n".encode() + (b"" if head else self._body)
        self._parts[kind] = parts = (before.encode(), between.encode(), after)
        return parts


class Written:
    """A reply's bytes for one request: what aiohttp's connection handler writes, logs and keeps alive by.

    It stands where aiohttp expects a `StreamResponse` (see `clickbus.compat.aiohttp.Answer`).
    """

    __slots__ = ("_data", "body_length", "keep_alive", "status")

    def __init__(self, status: int, keep_alive: bool, data: bytes) -> None:
        self.status = status
        self.keep_alive = keep_alive
        self.body_length = len(data)  # as aiohttp counts it: every byte written, the head's included
        self._data = data

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        """The headers written (for an access log format that names one)."""
        lines = self._data.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")[1:]
        return CIMultiDictProxy(CIMultiDict(line.partition(": ")[::2] for line in lines))

    async def prepare(self, request: web.BaseRequest) -> None:
        """Write the answer, waiting (as aiohttp does) while the client does not read what it was sent."""
        writer = request.writer
        await writer.write(self._data)
        await writer.drain()

    async def write_eof(self) -> None:
        """Nothing more to write: the answer went whole."""
