"""A gate in front of the test broker, so that a restarted Tansu can be given its topics before clients reach it.

Tansu is memory-only: a broker started again is empty, and clients that
reach it first (aiokafka retries its in-flight requests on its own) write to
topics it does not have, which Tansu 0.6 stores without creating them
(tests/chaos/test_tansu_quirk.py). A real broker comes back with its topics.
The gate models that: Tansu advertises the gate's address, so every client
connects through it; while the gate is shut it closes every connection but
those whose client id it admits (the test's own setup client), and it opens
once the topics are there. Connections are told apart by the client id of
their first request, which every Kafka request header carries.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine, Iterable
from typing import Any, TypeVar

from tests.support.ports import free_port

HEADER = 10  # request size prefix is apart; api key, api version, correlation id, client id length
MAX_FIRST_REQUEST = 1 << 20
CHUNK = 1 << 16

T = TypeVar("T")


class KafkaGate:
    """Forwards Kafka connections from its loopback port to a broker's; when shut, only admitted clients pass."""

    def __init__(self, broker_port: int, admitted: Iterable[str]) -> None:
        self.port = free_port()
        self.broker_port = broker_port
        self.admitted = frozenset(admitted)
        self._open = True
        self._streams: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="kafka-gate", daemon=True)
        self._server: asyncio.Server | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> KafkaGate:
        """Listen (open) in a thread of its own, so that the test's event loop never holds up forwarding."""
        self._thread.start()
        self._server = self._call(asyncio.start_server(self._serve, "127.0.0.1", self.port))
        return self

    def shut(self) -> None:
        """Close every connection now and from now on every new one but the admitted clients'."""
        self._call(self._set(is_open=False))

    def open(self) -> None:
        self._call(self._set(is_open=True))

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        self.shut()
        if self._server is not None:
            self._server.close()
            self._call(self._server.wait_closed())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    async def _set(self, *, is_open: bool) -> None:
        self._open = is_open  # on the gate's loop: no connection is half-way through the check meanwhile
        if not is_open:
            for stream in list(self._streams):
                stream.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        streams = [writer]
        self._streams.add(writer)
        try:
            first, client_id = await first_request(reader)
            if not (self._open or client_id in self.admitted):
                return  # as if the broker were down
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.broker_port)
            streams.append(up_writer)
            self._streams.add(up_writer)
            up_writer.write(first)
            await either(pipe(reader, up_writer), pipe(up_reader, writer))
        except (OSError, EOFError, ValueError):
            pass  # a broker down or a client gone: the connection closes, as with no gate
        finally:
            for stream in streams:
                self._streams.discard(stream)
                stream.close()


async def first_request(reader: asyncio.StreamReader) -> tuple[bytes, str | None]:
    """The first request's bytes, and the client id in its header."""
    prefix = await reader.readexactly(4)
    size = int.from_bytes(prefix, "big", signed=True)
    if not HEADER <= size <= MAX_FIRST_REQUEST:
        raise ValueError(f"not a Kafka request: size {size}")
    body = await reader.readexactly(size)
    length = int.from_bytes(body[8:10], "big", signed=True)
    client_id = None if length < 0 else body[10 : 10 + length].decode(errors="replace")
    return prefix + body, client_id


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()


async def either(*coroutines: Coroutine[Any, Any, None]) -> None:
    """Run both directions until one ends (its side closed): the connection ends then."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
