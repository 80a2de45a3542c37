"""Coverage-guided fuzzing of the parsers that face the internet (`make fuzz`).

Each input is split by its first byte into one of the targets: token
verification, the landing URL policy, or insertion-body parsing and insertion.
The only acceptable outcomes are a result or a documented domain error.

    python -m tests.fuzz.atheris_edge -max_total_time=300
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    import orjson

    from clickbus.creative import Inserter
    from clickbus.edge.insert import parse_insert
    from clickbus.errors import InsertRequestError, TokenError
    from clickbus.landing import host_allowed, landing_problems
    from clickbus.tokens import AdContext, Keyring

KEYRING = Keyring({"k1": b"k" * 32}, "k1")
INSERTER = Inserter(KEYRING, "https://clk.example", ttl_s=60)
SEED = KEYRING.sign(AdContext(member_id=1, landing_url="https://shop.example/"), ttl_s=60)


def fuzz_token(data: bytes) -> None:
    text = data.decode("latin-1")
    try:
        token = KEYRING.verify(text)
    except TokenError:
        return
    assert KEYRING.verify(SEED).ad.member_id == 1
    assert text == KEYRING.stamp(token.ad, ttl_s=token.expires_at - token.issued_at, now=token.issued_at).sign(
        token.ad.landing_url
    ), "an accepted token must be exactly what we would have signed"


def fuzz_landing(data: bytes) -> None:
    url = data.decode("utf-8", "replace")
    if not landing_problems(url):
        assert url.lower().startswith(("http://", "https://"))
    host_allowed(url, ("shop.example",))


def fuzz_insert(data: bytes) -> None:
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        return
    try:
        markup, ad, wrap = parse_insert(body)
        INSERTER.insert(markup, ad, wrap_links=wrap)
    except InsertRequestError:
        return


TARGETS = (fuzz_token, fuzz_landing, fuzz_insert)


def one_input(data: bytes) -> None:
    if data:
        TARGETS[data[0] % len(TARGETS)](data[1:])


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
