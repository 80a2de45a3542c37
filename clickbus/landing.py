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

Characters are judged by their Unicode properties, not a list: a landing holds no control (Cc),
format (Cf, such as U+FFF9) or separator (Zs, Zl, Zp) character, as `unicodedata` says, and no
`Default_Ignorable_Code_Point` or `Bidi_Control` character, from the table generated from the
Unicode Character Database (`clickbus.unicode_props`: `unicodedata` does not expose those two).
Browsers drop default-ignorables from hosts (`shop\u3164.example` is `shop.example`) and draw
nothing for them in paths: what is signed must read the same to every reader.

A landing whose host a browser reads as a loopback, private, link-local or otherwise non-global
address (`127.0.0.1`, `[::1]`, `[::ffff:7f00:1]`, `10.0.0.1`, `169.254.169.254`, `0.0.0.0`), or as
a name for the visitor's own machine or network (`localhost` and `*.localhost`, `*.local`,
`*.internal`, `*.home.arpa`, a name without a dot), is a signed redirect into the visitor's own
network: refused unless `allow_private` (`edge.allow_private_landings`, for development). The
host judged is the browser's, so every spelling the WHATWG parser normalises is judged alike.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import urlsplit

from ada_url import URL, idna_to_ascii

from clickbus.errors import LandingURLError
from clickbus.hosts import PRIVATE, is_private, redirect_host_problem
from clickbus.unicode_props import BIDI_CONTROL, DEFAULT_IGNORABLE

MAX_LANDING_CHARS = 2048
_SCHEMES = ("http", "https")
_ASCII_REFUSED = re.compile(r"[\x00-\x20\x7f]")  # C0 controls, space, DEL: the ASCII part of the rule
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})
_INVISIBLE = re.compile("[" + "".join(f"{chr(a)}-{chr(b)}" for a, b in DEFAULT_IGNORABLE + BIDI_CONTROL) + "]")
PRIVATE_PROBLEM = f"goes to {PRIVATE} (edge.allow_private_landings)"


@dataclass(frozen=True, slots=True)
class Verdict:
    """The policy's judgement of one landing string."""

    problems: tuple[str, ...]  # every reason it is refused, a private host aside
    host: str  # as a browser reads it: lower case ASCII; empty when the URL is refused
    location: str  # what goes into a `Location` header
    private: bool = False  # the host is the visitor's own machine or network


_TOO_LONG = Verdict((f"longer than {MAX_LANDING_CHARS} characters",), "", "")


def landing_problems(url: str, *, allow_private: bool = False) -> tuple[str, ...]:
    """Every reason `url` may not be a landing page; empty when it may (private hosts too, with `allow_private`)."""
    judged = _judge(url) if len(url) <= MAX_LANDING_CHARS else _TOO_LONG  # verdict(url), inline: every click pays it
    if judged.private and not allow_private:
        return (PRIVATE_PROBLEM,)
    return judged.problems


def verdict(url: str) -> Verdict:
    """The policy's verdict on `url`: refused with problems, or private where private landings are not allowed."""
    # The same landings come back on every impression of a creative: remember recent verdicts.
    return _judge(url) if len(url) <= MAX_LANDING_CHARS else _TOO_LONG


@functools.lru_cache(maxsize=4096)
def _judge(url: str) -> Verdict:
    problems = []
    if _ASCII_REFUSED.search(url) or (not url.isascii() and _invisible(url)):
        problems.append("contains control characters, bidi controls, whitespace or invisible (default-ignorable) ones")
    if "\\" in url:
        problems.append("contains a backslash")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port
    except ValueError:
        return Verdict((*problems, "is not a valid URL"), "", "")
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
        return Verdict(tuple(problems), "", "")
    return Verdict((), browser.hostname, url if url.isascii() else browser.href, is_private(browser.hostname))


def _invisible(url: str) -> bool:
    """Whether `url` holds a non-ASCII control, format, separator, default-ignorable or bidi control character."""
    return bool(_INVISIBLE.search(url)) or any(_refused(c) for c in set(url) if c > "\x7f")


@functools.lru_cache(maxsize=1024)
def _refused(char: str) -> bool:
    return unicodedata.category(char) in _REFUSED_CATEGORIES


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


def check_landing(url: str, *, allow_private: bool = False) -> str:
    """Return `url` if it may be a landing page; raise `LandingURLError` listing every problem."""
    problems = landing_problems(url, allow_private=allow_private)
    if problems:
        raise LandingURLError(url, list(problems))
    return url


def location_header(url: str) -> str:
    """The `Location` header value for a landing that passes the policy: non-ASCII characters percent-encoded."""
    return verdict(url).location


def browser_host(url: str) -> str:
    """The host a browser goes to for a landing that passes the policy (empty for one that does not)."""
    return verdict(url).host


def host_allowed(url: str, allowed: tuple[str, ...], *, allow_private: bool = False) -> bool:
    """True when `url` is a valid landing whose host (as a browser reads it) is one of `allowed` or a subdomain.

    Entries that are not host names, or are public suffixes (`com`: signed under an older policy), allow nothing.
    """
    judged = verdict(url)
    host = judged.host
    if not host or (judged.private and not allow_private):
        return False
    allowed = tuple(h for h in allowed if redirect_host_problem(h, allow_private=allow_private) is None)
    return any(host == h or host.endswith("." + h) for h in allowed)
