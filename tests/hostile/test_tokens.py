"""Tampered tokens: every single-bit flip (of the bytes and of the text), truncation and re-encoding is refused.

A click token is the whole signed context; any change must answer `400` (or `404` where the path no
longer routes), never a `302`, a `5xx` or a hang.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, Iterator
from urllib.parse import quote

import aiohttp

from tests.hostile.harness import Tally, click_path, fetch, run_all, session
from tests.support.service import Service

REFUSED = (400, 404)


def _decoded(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def _encoded(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def byte_flips(token: str) -> Iterator[str]:
    """Every single-bit flip of the signed bytes, encoded as the edge encodes tokens."""
    raw = bytearray(_decoded(token))
    for index in range(len(raw)):
        for bit in range(8):
            raw[index] ^= 1 << bit
            yield _encoded(bytes(raw))
            raw[index] ^= 1 << bit


def text_flips(token: str) -> Iterator[str]:
    """Every single-bit flip of the token's characters (7-bit ASCII), whatever character that makes."""
    for index, char in enumerate(token):
        for bit in range(7):
            yield token[:index] + chr(ord(char) ^ (1 << bit)) + token[index + 1 :]


def truncations(token: str) -> Iterator[str]:
    return (token[:length] for length in range(1, len(token)))


def re_encodings(token: str) -> Iterator[str]:
    """The same bytes spelled otherwise: padding, the standard alphabet, case, whitespace, doubled."""
    raw = _decoded(token)
    yield token + "="
    yield token + "=="
    yield base64.b64encode(raw).decode()
    yield base64.b64encode(raw).rstrip(b"=").decode()
    yield base64.urlsafe_b64encode(raw).decode() + "="
    yield token.swapcase()
    yield token + " "
    yield " " + token
    yield token + "\n"
    yield token + token
    yield token[:-1] + chr(ord(token[-1]) + 1) if token[-1] != "z" else token[:-1] + "y"
    yield _encoded(raw + b"\x00")
    yield _encoded(b"\x00" + raw)
    yield base64.b32encode(raw).decode()
    yield raw.hex()


async def test_tampered_tokens_are_refused(service: Service) -> None:
    token = click_path(service).removeprefix("/ck/")
    families = {
        "byte flips": list(byte_flips(token)),
        "text flips": list(text_flips(token)),
        "truncations": list(truncations(token)),
        "re-encodings": list(re_encodings(token)),
    }
    tallies = {family: Tally(f"tokens: {family}", judge=lambda location: False) for family in families}

    def attempt(client: aiohttp.ClientSession, family: str, tampered: str) -> Callable[[], Awaitable[None]]:
        async def go() -> None:
            answer = await fetch(client, "GET", f"{service.url}/ck/{quote(tampered, safe='')}")
            tallies[family].count(answer, repr(tampered), expected=REFUSED)

        return go

    async with session() as client:
        assert (await fetch(client, "GET", f"{service.url}/ck/{token}")).status == 302  # the untampered one
        await run_all(attempt(client, f, t) for f, tampered in families.items() for t in tampered if t != token)
    for tally in tallies.values():
        tally.report()
