"""Landing URL policy: which destinations may be signed and redirected to.

Checked when a URL is signed and again when a click is redirected, so a token
minted under an older, looser policy still cannot send a browser somewhere
unsafe. A landing must read the same to this policy and to a browser: besides
the checks below it must parse with a WHATWG URL parser (ada, the parser of
Node.js), which refuses the hosts browsers refuse (`evil.com%2f.shop.example`,
`<`, `|`, `%00`, invalid IDNA) and gives the host that hosts are matched on (in
ASCII, after IDNA). A host the parser reads as something other than what it says
(`shop%2eexample`, `2130706433`, `0x7f.1`) is refused: what is signed is what a
browser visits. The `Location` of a non-ASCII landing is that parser's
percent-encoded serialization.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from ada_url import URL, idna_to_ascii

from clickbus.errors import LandingURLError

MAX_LANDING_CHARS = 2048
_SCHEMES = ("http", "https")
# C0 and C1 controls (U+0085 too), space and every other Unicode space, zero-width and bidi controls
# (U+200E/F, U+202A-E, U+2066-9), line and paragraph separators (U+2028/9), the byte-order mark.
_CONTROL = re.compile(r"[\x00-\x20\x7f-\xa0\u1680\u180e\u2000-\u200f\u2028-\u202f\u205f-\u206f\u3000\ufeff]")


@dataclass(frozen=True, slots=True)
class _Verdict:
    problems: tuple[str, ...]
    host: str  # as a browser reads it: lower case ASCII; empty when the URL is refused
    location: str  # what goes into a `Location` header


def landing_problems(url: str) -> tuple[str, ...]:
    """Every reason `url` may not be a landing page; empty when it may."""
    return _verdict(url).problems


def _verdict(url: str) -> _Verdict:
    if len(url) > MAX_LANDING_CHARS:
        return _Verdict((f"longer than {MAX_LANDING_CHARS} characters",), "", "")
    # The same landings come back on every impression of a creative: remember recent verdicts.
    return _judge(url)


@functools.lru_cache(maxsize=4096)
def _judge(url: str) -> _Verdict:
    problems = []
    if _CONTROL.search(url):
        problems.append("contains control characters, bidi controls or whitespace")
    if "\\" in url:
        problems.append("contains a backslash")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port
    except ValueError:
        return _Verdict((*problems, "is not a valid URL"), "", "")
    if parts.scheme.lower() not in _SCHEMES:
        problems.append("scheme must be http or https")
    if not host:
        problems.append("has no host")
    if "@" in parts.netloc:
        problems.append("contains userinfo (@)")
    browser = _browser_url(url)
    if browser is None:
        problems.append("is not a valid URL as a browser parses it (WHATWG): a forbidden or invalid host")
    elif host and browser.hostname != _as_browsers_write(host):
        problems.append(f"has a host that a browser reads as {browser.hostname!r}")
    if problems or browser is None:
        return _Verdict(tuple(problems), "", "")
    return _Verdict((), browser.hostname, url if url.isascii() else browser.href)


def _as_browsers_write(host: str) -> str:
    """`host` as the WHATWG parser serializes it when nothing in it is decoded or reinterpreted."""
    if ":" in host:
        try:
            return f"[{ipaddress.IPv6Address(host)}]"
        except ValueError:
            return host
    return idna_to_ascii(host).decode("ascii", "replace") if not host.isascii() else host.lower()


def _browser_url(url: str) -> URL | None:
    try:
        return URL(url)
    except ValueError:
        return None


def check_landing(url: str) -> str:
    """Return `url` if it may be a landing page; raise `LandingURLError` listing every problem."""
    problems = landing_problems(url)
    if problems:
        raise LandingURLError(url, list(problems))
    return url


def location_header(url: str) -> str:
    """The `Location` header value for a landing that passes the policy: non-ASCII characters percent-encoded."""
    return _verdict(url).location


def browser_host(url: str) -> str:
    """The host a browser goes to for a landing that passes the policy (empty for one that does not)."""
    return _verdict(url).host


def host_allowed(url: str, allowed: tuple[str, ...]) -> bool:
    """True when `url` is a valid landing whose host (as a browser reads it) is one of `allowed` or a subdomain."""
    host = _verdict(url).host
    return bool(host) and any(host == h or host.endswith("." + h) for h in allowed)
