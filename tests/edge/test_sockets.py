"""The listening sockets of one run: its workers' copies share the address, nobody else gets it."""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Iterator

import pytest

from clickbus.config import HostPort
from clickbus.edge.sockets import bind
from clickbus.errors import AddressInUse

CONNECTIONS = 200


@pytest.fixture
def run_sockets() -> Iterator[list[tuple[socket.socket, ...]]]:
    """The sockets a run of two workers binds for one listener (on a port the kernel picks)."""
    copies = bind(HostPort("127.0.0.1", 0), "edge.listen", 2)
    yield copies
    for copy in copies:
        for sock in copy:
            sock.close()


def test_another_run_cannot_join_the_address_with_or_without_workers(
    run_sockets: list[tuple[socket.socket, ...]],
) -> None:
    """Before the fix every bind used SO_REUSEPORT, so a second run joined the first's port and took half its clicks."""
    port = run_sockets[0][0].getsockname()[1]
    assert run_sockets[1][0].getsockname()[1] == port
    for copies in (1, 2):
        with pytest.raises(AddressInUse, match=rf"^127\.0\.0\.1:{port} is already in use$"):
            bind(HostPort("127.0.0.1", port), "edge.listen", copies)


def test_the_kernel_spreads_connections_over_the_workers_sockets(run_sockets: list[tuple[socket.socket, ...]]) -> None:
    """As SO_REUSEPORT did: one socket shared by every worker left keep-alive connections to the first to accept."""
    port = run_sockets[0][0].getsockname()[1]
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(CONNECTIONS)]
    accepted: Counter[int] = Counter()
    for n, (sock,) in enumerate(run_sockets):
        sock.setblocking(False)
        while True:
            try:
                conn, _ = sock.accept()
            except BlockingIOError:
                break
            conn.close()
            accepted[n] += 1
    for client in clients:
        client.close()
    assert sum(accepted.values()) == CONNECTIONS
    assert min(accepted[0], accepted[1]) > CONNECTIONS // 10, accepted
