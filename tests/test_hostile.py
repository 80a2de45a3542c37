"""A corpus of hostile requests replayed against the edge over a raw socket.

The pass condition for every entry: an answer (or a closed connection), never a
5xx, never a traceback, and never a `Location` that nobody signed.
"""

from __future__ import annotations

import asyncio
import re
from urllib.parse import quote

import pytest

from clickbus.landing import landing_problems
from clickbus.tokens import AdContext, Keyring
from tests.support.edgeapp import EdgeClient

LANDING = "https://shop.example/landing"
AD = AdContext(member_id=13, landing_url=LANDING, redirect_hosts=("shop.example",))
SIGNED = {LANDING, "https://shop.example/deep"}

OPEN_REDIRECTS = [
    "https://evil.example/",
    "//evil.example",
    "///evil.example",
    "/\\evil.example",
    "https:evil.example",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    "data:text/html;base64,PHNjcmlwdD4=",
    "https://shop.example@evil.example/",
    "https://shop.example%40evil.example/",
    "https://evil.example#shop.example",
    "https://evil.example?shop.example",
    "https://shop.example.evil.example/",
    "https://evil.example\\.shop.example/",
    "https://evil.example/\r\nLocation: https://evil.example/",
    "https://shop.example/\x00",
    "\thttps://evil.example/",
    "https://xn--shp-example-9db.example/",
    "https://" + "a" * 5000 + ".example/",
]


TOKEN = b"{token}"  # each request below is sent with a freshly signed token here
CK = b"/ck/" + TOKEN
RAW_REQUESTS = [
    b"GET " + CK + b"\r\nLocation: https://evil.example/ HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET " + CK + b"%0d%0aLocation:%20https://evil.example/ HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET " + CK + b" HTTP/1.1\r\nHost: x\r\nUser-Agent: a\r\n b\r\n\r\n",
    b"GET " + CK + b" HTTP/1.1\r\nHost: x\r\nReferer: " + b"r" * 100_000 + b"\r\n\r\n",
    b"GET /ck/" + b"A" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET " + CK + b"\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"BREW " + CK + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET " + CK + b" HTTP/9.9\r\nHost: x\r\n\r\n",
    b'POST /v1/insert HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\n{"a":',
    b"POST /v1/insert HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 99999999\r\n\r\n{}",
    b"POST /v1/insert HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    b"POST /v1/insert HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 4\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,
    b"GET /ck/%ZZ HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /ck/..%2f..%2fetc%2fpasswd HTTP/1.1\r\nHost: x\r\n\r\n",
]


async def send_raw(client: EdgeClient, payload: bytes) -> bytes:
    assert client.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    try:
        writer.write(payload)
        await writer.drain()
        return await asyncio.wait_for(reader.read(65536), 10)
    except ConnectionResetError:
        return b""
    finally:
        writer.close()


def check_answer(answer: bytes) -> None:
    if not answer:  # the server may close a connection it cannot parse
        return
    status = re.match(rb"HTTP/\d\.\d (\d{3})", answer)  # aiohttp answers a broken request line as HTTP/0.9
    assert status, answer[:200]
    assert not status.group(1).startswith(b"5"), answer[:500]
    assert b"Traceback" not in answer
    for location in re.findall(rb"\r\nLocation: ([^\r\n]*)", answer, re.IGNORECASE):
        assert location.decode() in SIGNED, location


@pytest.mark.parametrize("appended", OPEN_REDIRECTS)
async def test_open_redirect_attempts_go_only_to_signed_places(
    client: EdgeClient, keyring: Keyring, appended: str
) -> None:
    token = keyring.sign(AD, ttl_s=60)
    response = await client.get(f"/ck/{token}?r={quote(appended, safe='')}", allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == LANDING


async def test_allowed_appended_destination_is_followed(client: EdgeClient, keyring: Keyring) -> None:
    token = keyring.sign(AD, ttl_s=60)
    response = await client.get(f"/ck/{token}?r={quote('https://shop.example/deep', safe='')}", allow_redirects=False)
    assert response.headers["Location"] == "https://shop.example/deep"


async def test_encoded_crlf_stays_encoded(client: EdgeClient, keyring: Keyring) -> None:
    appended = "https://shop.example/%0d%0aSet-Cookie:%20a=b"
    answer = await send_raw(
        client, f"GET /ck/{keyring.sign(AD, ttl_s=60)}?r={quote(appended)} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    )
    assert b"\r\nSet-Cookie" not in answer
    assert f"\r\nLocation: {appended}\r\n".encode() in answer


@pytest.mark.parametrize("request_bytes", RAW_REQUESTS, ids=[f"raw{n}" for n in range(len(RAW_REQUESTS))])
async def test_raw_hostile_requests(client: EdgeClient, keyring: Keyring, request_bytes: bytes) -> None:
    payload = request_bytes.replace(TOKEN, keyring.sign(AD, ttl_s=60).encode())
    check_answer(await send_raw(client, payload))


@pytest.mark.parametrize("landing", OPEN_REDIRECTS)
async def test_insertion_signs_only_landings_that_pass_the_policy(
    client: EdgeClient, keyring: Keyring, landing: str
) -> None:
    body = {"markup": f'<a href="${{CLICK_URL}}{landing}">x</a>', "auction": {"member_id": 1}}
    response = await client.post("/v1/insert", json=body)
    assert response.status in (200, 422)
    if response.status == 200:  # the landing ended at a character a URL cannot hold: what was signed is clean
        token = re.findall(r"/ck/([\w-]+)", (await response.json())["markup"])[0]
        assert landing_problems(keyring.verify(token).ad.landing_url) == ()
