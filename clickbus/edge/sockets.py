"""The edge's listening sockets: bound once per `clickbus run`, never shared with another run.

`clickbus run` binds both listeners itself, without SO_REUSEPORT, before anything else starts,
and its workers inherit the bound sockets (their descriptors are named in `CLICKBUS_LISTEN_FDS`).
The kernel then refuses the address to every other process, whether it asks for SO_REUSEPORT or
not, for as long as the run lives; a restarted worker gets the very same socket back, so there is
no moment when the address is free for someone else to take, and connections waiting in the
accept queue are kept while a worker restarts (the other workers accept them meanwhile).
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
    """The bound, listening sockets of both listeners (one per address a host name resolves to)."""

    public: tuple[socket.socket, ...]
    admin: tuple[socket.socket, ...]

    def fds(self) -> tuple[int, ...]:
        return tuple(sock.fileno() for sock in (*self.public, *self.admin))

    def env(self) -> dict[str, str]:
        """The environment that tells a worker which inherited descriptors are which listener."""
        public = ",".join(str(sock.fileno()) for sock in self.public)
        admin = ",".join(str(sock.fileno()) for sock in self.admin)
        return {ENV_LISTEN_FDS: f"{public};{admin}"}

    def close(self) -> None:
        for sock in (*self.public, *self.admin):
            sock.close()


def open_listeners(edge: EdgeConfig) -> Listeners:
    """Bind and listen on `edge.listen` and `edge.admin_listen`; `CannotStart` (one line) when either cannot be."""
    public = bind(edge.listen, "edge.listen")
    try:
        return Listeners(public, bind(edge.admin_listen, "edge.admin_listen"))
    except BaseException:
        for sock in public:
            sock.close()
        raise


def inherited(env: Mapping[str, str] = os.environ) -> Listeners | None:
    """The listeners a worker's supervisor bound for it, or None outside a supervised worker."""
    text = env.get(ENV_LISTEN_FDS)
    if not text:
        return None
    public, _, admin = text.partition(";")
    return Listeners(_adopt(public), _adopt(admin))


def _adopt(fds: str) -> tuple[socket.socket, ...]:
    return tuple(socket.socket(fileno=int(fd)) for fd in fds.split(",") if fd)


def bind(address: HostPort, key: str) -> tuple[socket.socket, ...]:
    """Listening sockets on every address `address` resolves to, taken by this process alone."""
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, sockaddr in _resolved(address, key):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            # SO_REUSEADDR only lets a restart bind past connections in TIME_WAIT: unlike SO_REUSEPORT,
            # it never lets a second socket listen on the address
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # as asyncio's own servers do
            try:
                sock.bind(sockaddr)
                sock.listen(BACKLOG)  # at once: connections queue while the workers start
            except OSError as exc:
                raise _refusal(address, key, exc) from None
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return tuple(sockets)


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
