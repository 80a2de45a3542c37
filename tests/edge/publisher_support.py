"""Shared set-up for the publisher API tests: their configuration (and its `config` fixture), real insertions."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest

from clickbus.config import Config
from tests.support.configs import build_config
from tests.support.edgeapp import EdgeClient, admin_client

REFERENCE = Path(__file__).resolve().parent.parent / "reference"
API_KEY = "cbk_test-key-publisher-a"
SLOW_KEY = "cbk_test-key-slow"
MEMBER = 13
CAMPAIGN = 1
PLACEMENTS = ["header_banner", "article_inline"]
LANDING = "https://shop.example/product/1"
MAX_BODY = 1024
MAX_TEXT = 64
AUCTION = {"member_id": MEMBER, "auction_id_64": 123456789, "creative_id": 77, "user_id_64": 0, "pos": 2}


def sha256_hex(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def make_config(data_dir: Path, **edge: Any) -> Config:
    """A configuration with one campaign and two API keys (one allowing a single request per second)."""
    return build_config(
        data_dir,
        edge={"public_url": "http://clickbus.test", "max_body_bytes": MAX_BODY, "max_text_chars": MAX_TEXT, **edge},
        campaigns={str(CAMPAIGN): {"member_id": MEMBER, "placements": PLACEMENTS}},
        api_keys={
            "publisher-a": {"sha256": sha256_hex(API_KEY), "rate_per_s": 10_000},
            "slow": {"sha256": sha256_hex(SLOW_KEY), "rate_per_s": 1},
        },
    )


@pytest.fixture(name="config")
def publisher_config(tmp_path: Path) -> Config:
    """The `config` fixture of the publisher API's test modules, which import it: `make_config` on the test's dir."""
    return make_config(tmp_path)


async def insertion(client: EdgeClient, **auction: Any) -> dict[str, Any]:
    """The body of a real `POST /v1/insert`, on the internal listener of `client`'s edge."""
    body = {"markup": "<a href='${CLICK_URL}'>ad</a>", "landing_url": LANDING, "auction": {**AUCTION, **auction}}
    async with admin_client(client.app) as admin:
        response = await admin.post("/v1/insert", json=body)
        assert response.status == 200, await response.text()
        result: dict[str, Any] = await response.json()
    return result


def path_of(url: str) -> str:
    """The path (and query) of an absolute URL, to request it from the test server."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


_JS_TOKEN = re.compile(r"""("(?:[^"\\]|\\.)*")|'((?:[^'\\]|\\.)*)'|([A-Za-z_]\w*)(?=\s*:)""")


def js_literal_to_json(text: str) -> Any:
    """Parse the JavaScript object literal the VTEX clicks page prints (unquoted keys, single quotes)."""

    def token(match: re.Match[str]) -> str:
        double, single, key = match.groups()
        if double is not None:
            return double
        return orjson.dumps(single if single is not None else key).decode()

    text = _JS_TOKEN.sub(token, text)
    return orjson.loads(re.sub(r",(\s*[}\]])", r"\1", text))
