"""Raw-socket requests against a running `clickbus run`, and the per-category tally the hostile suite prints.

Every hostile test counts, per category: attempts, `302`s to a host nobody signed, `5xx`s, and
hangs (no answer and no close within the limit). The counts that must be zero are asserted zero.
"""

from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

READ_LIMIT_S = 10.0
STATUS = re.compile(rb"HTTP/\d\.\d (\d{3})")


@dataclass(frozen=True, slots=True)
class Answer:
    """What came back on one connection: the raw bytes, and whether it neither answered nor closed in time."""

    raw: bytes
    hung: bool = False

    @property
    def status(self) -> int | None:
        match = STATUS.match(self.raw)
        return int(match.group(1)) if match else None

    @property
    def head(self) -> str:
        return self.raw.split(b"\r\n\r\n", 1)[0].decode("latin-1")

    @property
    def body(self) -> bytes:
        return self.raw.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in self.raw else b""

    def header(self, name: str) -> str | None:
        for line in self.head.split("\r\n")[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return None


def exchange(port: int, payload: bytes, *, limit_s: float = READ_LIMIT_S) -> Answer:
    """Send `payload` on a fresh connection and read until the server closes it (or `limit_s` passes: a hang)."""
    with socket.create_connection(("127.0.0.1", port), timeout=limit_s) as sock:
        sock.sendall(payload)
        return read_until_closed(sock, limit_s)


def read_until_closed(sock: socket.socket, limit_s: float) -> Answer:
    """Everything the server sends until it closes; `hung` when it has not closed within `limit_s`."""
    chunks: list[bytes] = []
    deadline = time.monotonic() + limit_s
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            return Answer(b"".join(chunks))
        if not chunk:
            return Answer(b"".join(chunks))
        chunks.append(chunk)
    return Answer(b"".join(chunks), hung=True)


def request(method: str, path: str, *, headers: dict[str, str] | None = None, body: bytes = b"") -> bytes:
    """An HTTP/1.1 request that asks the server to close the connection after answering."""
    lines = [f"{method} {path} HTTP/1.1", "Host: clickbus.test", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass
class Tally:
    """The counts of one category; `signed_hosts` are the hosts a `302` may go to."""

    category: str
    signed_hosts: frozenset[str] = frozenset()
    attempts: int = 0
    unsigned_302: int = 0
    server_errors: int = 0
    hangs: int = 0
    failures: list[str] = field(default_factory=list)

    def count(self, answer: Answer, what: str = "") -> Answer:
        """Count one attempt's answer; remember what broke a must-be-zero count."""
        self.attempts += 1
        status = answer.status
        if answer.hung:
            self.hangs += 1
            self.failures.append(f"hang: {what}")
        if status is not None and status >= 500:
            self.server_errors += 1
            self.failures.append(f"{status}: {what}")
        location = answer.header("Location")
        if status == 302 and (location is None or urlsplit(location).hostname not in self.signed_hosts):
            self.unsigned_302 += 1
            self.failures.append(f"302 to {location}: {what}")
        return answer

    def report(self) -> None:
        """Print the summary line and assert that every must-be-zero count is zero."""
        print(
            f"\n[hostile] {self.category}: attempts={self.attempts} 302-unsigned={self.unsigned_302} "
            f"5xx={self.server_errors} hangs={self.hangs}"
        )
        assert self.attempts > 0
        assert (self.unsigned_302, self.server_errors, self.hangs) == (0, 0, 0), self.failures[:10]
