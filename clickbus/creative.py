"""Serve-time insertion: put signed tracking URLs into a creative's markup.

Macros use Xandr's names. `${CLICK_URL}` immediately followed by a landing URL
signs that landing into its own token; every other click macro uses the
creative's default landing. Unknown macros are left as they are. This runs on
every impression, so it is one pass per job and one token per distinct landing.

Every scan is linear in the markup, whatever the markup: `wrap_links` reads
anchors the way an HTML tokenizer does (a tag ends at its `>` or at the end of
the markup, a quoted value at its quote or at the end), each step resuming
where the last stopped, so no byte is read more than a few times.
"""

from __future__ import annotations

import functools
import html
import random
import re
from typing import NamedTuple
from urllib.parse import quote

from clickbus.errors import InsertRequestError
from clickbus.hosts import redirect_host_problem
from clickbus.landing import MAX_LANDING_CHARS, PRIVATE_PROBLEM, Verdict, browser_host, landing_problems, verdict
from clickbus.tokens import AdContext, Keyring

CLICK_PATH = "/ck/"
IMPRESSION_PATH = "/i/"
REDIRECT_PARAM = "r"
BEACON_CLICK_PATH = "/v1/beacon/click/"
BEACON_IMPRESSION_PATH = "/v1/beacon/impression/"

_MACROS = re.compile(
    r"\$\{(?:(CLICK_URL)\}([^\s\"'<>`]*)|(CLICK_URL_ENC_ENC|CLICK_URL_ENC|IMPRESSION_URL|CACHEBUSTER|AUCTION_ID)\})"
)
_ANCHOR_START = re.compile(r"<a(?=[\s/>])", re.IGNORECASE)
# One attribute of a start tag: a name, then optionally `=` and a value. An unclosed quote runs to
# the end of the markup, as in a browser, so no match ever backtracks over what it read.
_ATTRIBUTE = re.compile(r"""[\s/]*([^\s/>][^\s/>=]*)(?:\s*=\s*("[^"]*"?|'[^']*'?|[^\s>]*))?""")
_HTTP = re.compile(r"https?://", re.IGNORECASE)
# A creative's markup comes back on every impression: its parse is remembered, up to this size (about
# 512 x 2 x 8 KiB for the cache in the worst case); larger markups are parsed on each insertion.
_CACHED_MARKUP_CHARS = 8192


class Insertion(NamedTuple):
    """A creative with its tracking URLs inserted (immutable; a NamedTuple is built in a fifth of a frozen dataclass's
    time, an eighth of insertion's cost for a banner)."""

    markup: str
    click_url: str | None
    impression_url: str
    token: str
    beacon_click_url: str
    beacon_impression_url: str
    longest_url: int  # characters (all ASCII) of the longest tracking URL minted, in the markup or not


class Inserter:
    """Mints tracking URLs under one keyring and public base URL."""

    def __init__(self, keyring: Keyring, public_url: str, *, ttl_s: int, allow_private_landings: bool = False) -> None:
        self.keyring = keyring
        self.allow_private_landings = allow_private_landings  # loopback and private landings, for development
        self.public_url = public_url.rstrip("/")
        self.ttl_s = ttl_s
        self.click_prefix = self.public_url + CLICK_PATH
        self.impression_prefix = self.public_url + IMPRESSION_PATH
        self.beacon_click_prefix = self.public_url + BEACON_CLICK_PATH
        self.beacon_impression_prefix = self.public_url + BEACON_IMPRESSION_PATH

    def token(self, ad: AdContext) -> str:
        """A token for `ad`; appended destinations default to its landing's host."""
        return self.keyring.stamp(ad, ttl_s=self.ttl_s, redirect_hosts=redirect_hosts(ad)).sign(ad.landing_url)

    def click_url(self, ad: AdContext) -> str:
        """A click URL for `ad`; its landing must already be checked."""
        return self.click_prefix + self.token(ad)

    def insert(self, markup: str, ad: AdContext, *, wrap_links: bool = False) -> Insertion:
        """Insert tracking URLs into `markup`; raise `InsertRequestError` listing every refused landing."""
        job = _Job(self, ad)
        if wrap_links:  # a markup of its own, with its own tokens: not one to remember
            markup = _wrap_anchors(markup, job)
            markup = job.expand_macros(markup, _parse(markup))
        else:
            markup = job.expand_macros(markup, _template(markup))
        if job.problems:
            raise InsertRequestError(job.problems)
        token = job.token_for(ad.landing_url)
        beacon_impression_url = self.beacon_impression_prefix + token
        longest = len(self.click_prefix) + job.longest_token()  # not `max`: see longest_token
        if len(beacon_impression_url) > longest:
            longest = len(beacon_impression_url)
        # tuple.__new__ directly: the NamedTuple's generated __new__ is one more Python frame (1.9k instructions)
        return tuple.__new__(
            Insertion,
            (
                markup,
                self.click_prefix + token if ad.landing_url else None,
                self.impression_prefix + token,
                token,
                self.beacon_click_prefix + token,
                beacon_impression_url,
                longest,
            ),
        )


def redirect_hosts(ad: AdContext) -> tuple[str, ...]:
    """Hosts an appended destination may go to: those given, else the default landing's own host."""
    return ad.redirect_hosts or _own_host(ad.landing_url)


def _own_host(landing_url: str) -> tuple[str, ...]:
    host = browser_host(landing_url) if landing_url else ""  # as appended destinations' hosts are matched
    return (host,) if host else ()


class _Job:
    """One insertion: caches a token per landing and collects landing problems."""

    __slots__ = (
        "_cachebuster",
        "_sign",
        "_tokens",
        "ad",
        "click_prefix",
        "impression_prefix",
        "inserter",
        "private",
        "problems",
    )

    def __init__(self, inserter: Inserter, ad: AdContext) -> None:
        self.inserter = inserter
        self.ad = ad
        self.click_prefix = inserter.click_prefix
        self.impression_prefix = inserter.impression_prefix
        self.private = private = inserter.allow_private_landings
        self.problems: list[dict[str, str]] = []
        self._tokens: dict[str, str] = {}
        self._cachebuster: str | None = None
        judged = verdict(ad.landing_url) if ad.landing_url else None  # its problems, and the default redirect host
        hosts = ad.redirect_hosts or ((judged.host,) if judged is not None and judged.host else ())
        self._sign = inserter.keyring.stamp(ad, ttl_s=inserter.ttl_s, redirect_hosts=hosts).sign
        if judged is not None and (judged.problems or (judged.private and not private)):
            self._refuse("landing_url", ad.landing_url, judged)
        for host in ad.redirect_hosts:  # the HTTP API has checked them; in-process callers get the same answer
            if (problem := redirect_host_problem(host, allow_private=private)) is not None:
                self.problems.append({"field": "auction.redirect_hosts", "message": f"{host[:100]!r} {problem}"})

    def _refuse(self, where: str, url: str, judged: Verdict) -> None:
        found = judged.problems or (PRIVATE_PROBLEM,)
        self.problems += [{"field": where, "message": f"{url[:100]!r} {p}"} for p in found]

    def token_for(self, landing: str) -> str:
        """The token for `landing`, signed once per insertion."""
        token = self._tokens.get(landing)
        if token is None:
            token = self._tokens[landing] = self._sign(landing)
        return token

    def longest_token(self) -> int:
        """Characters of the longest token signed (a loop: 3.11's `max` parses arguments by format, 3k instructions)."""
        longest = 0
        for token in self._tokens.values():
            if len(token) > longest:
                longest = len(token)
        return longest

    def click_url(self, landing: str, where: str) -> str:
        """The click URL for `landing` (the default one when empty), or "" when it is refused."""
        if not landing:
            if not self.ad.landing_url:
                self.problems.append({"field": where, "message": "no landing URL follows and landing_url is not set"})
            landing = self.ad.landing_url
        elif found := landing_problems(landing, allow_private=self.private):
            self.problems += [{"field": where, "message": f"{landing[:100]!r} {p}"} for p in found]
            return ""
        return self.click_prefix + self.token_for(landing)

    def wrap(self, url: str) -> str:
        """The click URL that replaces an anchor's `href` value (as written in the markup)."""
        landing = _unescape(url)
        if landing.startswith(self.click_prefix):
            return url
        return self.click_url(landing, "markup <a href>")

    def expand_macros(self, markup: str, template: _Template) -> str:
        """`markup` with each macro of its `template` replaced by its value."""
        first, macros = template
        if not macros:
            return markup
        parts = [first]
        tokens = self._tokens
        for name, landing, judged, after in macros:
            if judged is not None:
                if judged.problems or (judged.private and not self.private):
                    self._refuse("markup ${CLICK_URL}", landing, judged)
                    parts.append(after)
                    continue
            elif name == "IMPRESSION_URL":  # the other common macro, also without a call
                landing = self.ad.landing_url
            else:
                parts += (self.expand(name), after)
                continue
            token = tokens.get(landing)
            if token is None:
                token = tokens[landing] = self._sign(landing)
            parts += (self.impression_prefix if judged is None else self.click_prefix, token, after)
        return "".join(parts)

    def expand(self, macro: str) -> str:
        """The value of `${macro}`; `${CLICK_URL}` here is the default landing's."""
        if macro == "IMPRESSION_URL":
            return f"{self.inserter.public_url}{IMPRESSION_PATH}{self.token_for(self.ad.landing_url)}"
        if macro == "CACHEBUSTER":
            if self._cachebuster is None:
                self._cachebuster = str(random.getrandbits(31))
            return self._cachebuster
        if macro == "AUCTION_ID":
            return str(self.ad.auction_id_64)
        url = self.click_url("", "${" + macro + "}" if macro != "CLICK_URL" else "markup ${CLICK_URL}")
        if macro == "CLICK_URL":
            return url
        enc = quote(f"{url}?{REDIRECT_PARAM}=", safe="")
        return quote(enc, safe="") if macro == "CLICK_URL_ENC_ENC" else enc


# A markup's text before its first macro, then per macro: its name, a click macro's landing (unescaped),
# that landing's verdict (None for any other macro, and for a click macro without a landing), the text after it.
_Template = tuple[str, tuple[tuple[str, str, "Verdict | None", str], ...]]


def _parse(markup: str) -> _Template:
    """`markup` cut at its macros, in one linear pass: each `$` found by `str.find` (a memchr), then matched."""
    macros = []
    first = None
    done = 0
    at = markup.find("$")
    while at >= 0:
        found = _MACROS.match(markup, at)
        if found is None:
            at = markup.find("$", at + 1)
            continue
        if first is None:
            first = markup[:at]
        else:
            macros[-1] = (*macros[-1][:3], markup[done:at])
        click, landing, other = found.groups()
        landing = _unescape(landing) if click else ""  # may come out empty (`&#1;`): the default landing
        macros.append((click or other, landing, verdict(landing) if landing else None, ""))
        done = found.end()
        at = markup.find("$", done)
    if first is None:
        return markup, ()
    macros[-1] = (*macros[-1][:3], markup[done:])
    return first, tuple(macros)


_parse_remembered = functools.lru_cache(maxsize=512)(_parse)


def _template(markup: str) -> _Template:
    return _parse_remembered(markup) if len(markup) <= _CACHED_MARKUP_CHARS else _parse(markup)


def _unescape(text: str) -> str:
    """`html.unescape(text)`: a creative's landings come back on every impression, so recent ones are remembered."""
    if "&" not in text:
        return text
    return _unescape_cached(text) if len(text) <= MAX_LANDING_CHARS else html.unescape(text)


@functools.lru_cache(maxsize=4096)
def _unescape_cached(text: str) -> str:
    return html.unescape(text)


def anchor_hrefs(markup: str) -> list[tuple[int, int]]:
    """Spans of the quoted absolute http(s) `href` values of `markup`'s `<a>` tags, in order.

    The first `href` of a tag counts, as in a browser. Each search or match starts where the
    previous one stopped, so the work is linear in `len(markup)`.
    """
    spans = []
    pos = 0
    while (start := _ANCHOR_START.search(markup, pos)) is not None:
        pos, span = _tag_href(markup, start.end())
        if span is not None:
            spans.append(span)
    return spans


def _tag_href(markup: str, pos: int) -> tuple[int, tuple[int, int] | None]:
    """Where the tag whose attributes start at `pos` ends, and its first `href`'s value span if it wraps."""
    found: tuple[int, int] | None = None
    seen_href = False
    while (attribute := _ATTRIBUTE.match(markup, pos)) is not None and attribute.end() > pos:
        pos = attribute.end()
        if seen_href or attribute.group(1).lower() != "href":
            continue
        seen_href = True
        value = attribute.group(2) or ""
        quoted = len(value) >= 2 and value[0] in "\"'" and value[-1] == value[0]
        if quoted and _HTTP.match(value, 1):
            found = (attribute.start(2) + 1, attribute.end(2) - 1)
    return pos, found


def _wrap_anchors(markup: str, job: _Job) -> str:
    parts = []
    done = 0
    for start, end in anchor_hrefs(markup):
        parts += [markup[done:start], job.wrap(markup[start:end])]
        done = end
    parts.append(markup[done:])
    return "".join(parts)
