"""Landing URL policy: which destinations may be signed and redirected to.

Checked when a URL is signed and again when a click is redirected, so a token
minted under an older, looser policy still cannot send a browser somewhere
unsafe.
"""

from __future__ import annotations

import functools
import re
from urllib.parse import urlsplit

from clickbus.errors import LandingURLError

MAX_LANDING_CHARS = 2048
_SCHEMES = ("http", "https")
_CONTROL = re.compile(r"[\x00-\x20\x7f]")


def landing_problems(url: str) -> tuple[str, ...]:
    """Every reason `url` may not be a landing page; empty when it may."""
    # The same landings come back on every impression of a creative: remember recent verdicts.
    return _problems(url) if len(url) <= MAX_LANDING_CHARS else (f"longer than {MAX_LANDING_CHARS} characters",)


@functools.lru_cache(maxsize=4096)
def _problems(url: str) -> tuple[str, ...]:
    problems = []
    if _CONTROL.search(url):
        problems.append("contains control characters or whitespace")
    if "\\" in url:
        problems.append("contains a backslash")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port
    except ValueError:
        return (*problems, "is not a valid URL")
    if parts.scheme.lower() not in _SCHEMES:
        problems.append("scheme must be http or https")
    if not host:
        problems.append("has no host")
    if "@" in parts.netloc:
        problems.append("contains userinfo (@)")
    return tuple(problems)


def check_landing(url: str) -> str:
    """Return `url` if it may be a landing page; raise `LandingURLError` listing every problem."""
    problems = landing_problems(url)
    if problems:
        raise LandingURLError(url, list(problems))
    return url


def host_allowed(url: str, allowed: tuple[str, ...]) -> bool:
    """True when `url` is a valid landing whose host is one of `allowed` or a subdomain of one."""
    if landing_problems(url):
        return False
    host = (urlsplit(url).hostname or "").lower()
    return any(host == h or host.endswith("." + h) for h in allowed)
