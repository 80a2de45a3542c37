"""The edge's listening sockets: bound once per `clickbus run`, never shared with another run.

`clickbus run` binds both listeners itself, before anything else starts, and hands each worker
its own listening socket per address (their descriptors named in `CLICKBUS_LISTEN_FDS`); it keeps
them all for as long as it lives. The first socket of an address is bound *without* SO_REUSEPORT,
so the bind fails if anything else listens there (another `clickbus run` included, whether or not
it asked for SO_REUSEPORT); only then is SO_REUSEPORT turned on, for the run's own sockets to join
it. The kernel then spreads connections over the workers by hash, as before (one shared socket
would leave them to whichever worker accepts first: 59 of 64 keep-alive connections on one of
two workers in a test), while a second run's bind fails on the first socket. A restarted worker
gets its own socket back, so the address is never free for someone else to take, and the
connections queued on that socket wait for it rather than being reset.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from clickbus.config import EdgeConfig, HostPort
from clickbus.errors import AddressInUse, CannotStart

ENV_LISTEN_FDS = "CLICKBUS_LISTEN_FDS"
BACKLOG = 128  # aiohttp's TCPSite default


@dataclass(frozen=True, slots=True)
class Listeners:
    """One process's listening sockets for both listeners (one per address a host name resolves to)."""

    public: tuple[socket.socket, ...]
    admin: tuple[socket.socket, ...]

    def fds(self) -> tuple[int, ...]:
        return tuple(sock.fileno() for sock in (*self.public, *self.admin))

    def env(self) -> dict[str, str]:
        """The environment that tells a worker which inherited descriptors are which listener."""
        public = ",".join(str(sock.fileno()) for sock in self.public)
        admin = ",".join(str(sock.fileno()) for sock in self.admin)
        return {ENV_LISTEN_FDS: f"{public};{admin}"}


def open_listeners(edge: EdgeConfig, workers: int = 1) -> list[Listeners]:
    """Bind and listen on `edge.listen` and `edge.admin_listen`, a socket each per worker; `CannotStart` if not."""
    public = bind(edge.listen, "edge.listen", workers)
    try:
        admin = bind(edge.admin_listen, "edge.admin_listen", workers)
    except BaseException:
        for sock in (s for copy in public for s in copy):
            sock.close()
        raise
    return [Listeners(p, a) for p, a in zip(public, admin, strict=True)]


def inherited(env: Mapping[str, str] = os.environ) -> Listeners | None:
    """The listeners a worker's supervisor bound for it, or None outside a supervised worker."""
    text = env.get(ENV_LISTEN_FDS)
    if not text:
        return None
    public, _, admin = text.partition(";")
    return Listeners(_adopt(public), _adopt(admin))


def _adopt(fds: str) -> tuple[socket.socket, ...]:
    return tuple(socket.socket(fileno=int(fd)) for fd in fds.split(",") if fd)


def bind(address: HostPort, key: str, copies: int = 1) -> list[tuple[socket.socket, ...]]:
    """`copies` sets of listening sockets on every address `address` resolves to, taken by this process alone."""
    sockets: list[list[socket.socket]] = [[] for _ in range(copies)]
    try:
        for family, kind, proto, sockaddr in _resolved(address, key):
            for n, copy in enumerate(sockets):
                sock = socket.socket(family, kind, proto)
                copy.append(sock)
                at = sockets[0][-1].getsockname() if n else sockaddr  # port 0: the one the first was given
                _listen(sock, at, exclusive=n == 0, shared=copies > 1, address=address, key=key)
    except BaseException:
        for sock in (s for copy in sockets for s in copy):
            sock.close()
        raise
    return [tuple(copy) for copy in sockets]


def _listen(sock: socket.socket, sockaddr: Any, *, exclusive: bool, shared: bool, address: HostPort, key: str) -> None:
    # SO_REUSEADDR only lets a restart bind past connections in TIME_WAIT: it never lets two sockets listen
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # as asyncio's own servers do
    if shared and not exclusive:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(sockaddr)  # the first without SO_REUSEPORT: it fails if anything at all listens there
        if shared and exclusive:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # now, for this run's own sockets only
        sock.listen(BACKLOG)  # at once: connections queue while the workers start
    except OSError as exc:
        raise _refusal(address, key, exc) from None


def _resolved(address: HostPort, key: str) -> Iterator[tuple[socket.AddressFamily, socket.SocketKind, int, Any]]:
    try:
        infos = socket.getaddrinfo(
            address.host, address.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise CannotStart(f"{key} {address}: cannot resolve {address.host} ({exc.strerror})") from None
    seen = set()
    for family, kind, proto, _, sockaddr in infos:
        if sockaddr not in seen:
            seen.add(sockaddr)
            yield family, kind, proto, sockaddr


def _refusal(address: HostPort, key: str, exc: OSError) -> CannotStart:
    if exc.errno == errno.EADDRINUSE:
        return AddressInUse(str(address))
    if exc.errno == errno.EADDRNOTAVAIL:
        return CannotStart(f"{key} {address}: this host has no such address")
    return CannotStart(f"{key} {address}: {exc.strerror or exc}")
