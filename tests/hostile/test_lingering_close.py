"""A client still sending when it is refused reads its refusal: the edge closes lingering, as nginx does.

An answer that ends a connection (`431` for a head over the cap, `400` for a malformed one, `413`
for a body over the limit) used to be followed at once by `close()`. With the client's bytes still
unread in the server's receive buffer, the kernel then sends a reset instead of a FIN, and a reset
discards what the client had not yet read: the answer itself. The client saw "connection reset",
never the status that said why. Now the edge half-closes (FIN after the answer), reads and
discards what still comes for a bounded time and size, then closes.

Each case sends its whole request in one go (as a browser or a publisher's client would), reading
only after it has sent everything, which is when the reset used to arrive first.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.hostile.harness import AD, HANG_S, RAW_HOST, Answer, Tally, answer_length, click_path, inserter
from tests.support.service import Service

ROUNDS = 20
PIECE = 16 * 1024


def over_the_head_cap(service: Service) -> bytes:
    fields = b"".join(b"X-%d: " % i + b"v" * 8000 + b"\r\n" for i in range(60))  # 480 KB, the cap is 32 KiB
    return b"GET %b HTTP/1.1\r\nHost: %b\r\n%b\r\n" % (click_path(service).encode(), RAW_HOST.encode(), fields)


def malformed_then_more(service: Service) -> bytes:
    return b"GET / HTTP/1.1\r\nHost: " + RAW_HOST.encode() + b"\r\nBad Header\r\n\r\n" + b"x" * 400_000


def body_over_the_limit(service: Service) -> bytes:
    body = b'{"k": "' + b"v" * 2_000_000 + b'"}'
    path = (inserter(service).insert("", AD).beacon_click_url or "").removeprefix(service.url).encode()
    head = b"POST %b HTTP/1.1\r\nHost: %b\r\nContent-Type: application/json\r\n" % (path, RAW_HOST.encode())
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


CASES = {
    "a 480 KB head, sent whole": (over_the_head_cap, 431),
    "a malformed head, then 400 KB more": (malformed_then_more, 400),
    "a 2 MB body over the limit, sent whole": (body_over_the_limit, 413),
}


async def send_all_then_read(port: int, payload: bytes) -> tuple[Answer, bool]:
    """Send `payload` in pieces, as a client streaming a request does, then read: the answer, and whether it ended
    in a reset (rather than the server's orderly close)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for start in range(0, len(payload), PIECE):
            writer.write(payload[start : start + PIECE])
            try:
                await writer.drain()
            except ConnectionError:
                break  # the server stopped taking bytes; what it answered is still owed
        raw, reset = b"", False
        try:
            async with asyncio.timeout(HANG_S):
                while answer_length(raw) is None and (chunk := await reader.read(65536)):
                    raw += chunk
        except ConnectionError:
            reset = True
        return Answer.parse(raw), reset
    finally:
        writer.close()


@pytest.mark.parametrize("case", list(CASES))
async def test_a_refused_client_still_sending_reads_its_refusal(service: Service, case: str) -> None:
    build, status = CASES[case]
    tally = Tally(f"lingering close: {case}")
    payload = build(service)
    for _ in range(ROUNDS):
        answer, reset = await send_all_then_read(service.port, payload)
        tally.count(answer, case, expected=(status,))
        tally.notes["resets"] = tally.notes.get("resets", 0) + reset
    tally.report()
