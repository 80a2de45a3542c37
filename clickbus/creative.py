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

import html
import random
import re
from dataclasses import dataclass
from urllib.parse import quote

from clickbus.errors import InsertRequestError
from clickbus.hosts import redirect_host_problem
from clickbus.landing import browser_host, landing_problems
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


@dataclass(frozen=True, slots=True)
class Insertion:
    """A creative with its tracking URLs inserted."""

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

    def token(self, ad: AdContext) -> str:
        """A token for `ad`; appended destinations default to its landing's host."""
        return self.keyring.stamp(ad, ttl_s=self.ttl_s, redirect_hosts=redirect_hosts(ad)).sign(ad.landing_url)

    def click_url(self, ad: AdContext) -> str:
        """A click URL for `ad`; its landing must already be checked."""
        return self.click_prefix + self.token(ad)

    def insert(self, markup: str, ad: AdContext, *, wrap_links: bool = False) -> Insertion:
        """Insert tracking URLs into `markup`; raise `InsertRequestError` listing every refused landing."""
        job = _Job(self, ad)
        if wrap_links:
            markup = _wrap_anchors(markup, job)
        markup = _MACROS.sub(job.expand, markup)
        if job.problems:
            raise InsertRequestError(job.problems)
        token = job.default_token()
        beacon_impression_url = f"{self.public_url}{BEACON_IMPRESSION_PATH}{token}"
        return Insertion(
            markup=markup,
            click_url=self.click_prefix + token if ad.landing_url else None,
            impression_url=f"{self.public_url}{IMPRESSION_PATH}{token}",
            token=token,
            beacon_click_url=f"{self.public_url}{BEACON_CLICK_PATH}{token}",
            beacon_impression_url=beacon_impression_url,
            longest_url=max(len(beacon_impression_url), len(self.click_prefix) + job.longest_token()),
        )


def redirect_hosts(ad: AdContext) -> tuple[str, ...]:
    """Hosts an appended destination may go to: those given, else the default landing's own host."""
    return ad.redirect_hosts or _own_host(ad.landing_url)


def _own_host(landing_url: str) -> tuple[str, ...]:
    host = browser_host(landing_url) if landing_url else ""  # as appended destinations' hosts are matched
    return (host,) if host else ()


class _Job:
    """One insertion: caches a token per landing and collects landing problems."""

    __slots__ = ("_cachebuster", "_stamp", "_tokens", "ad", "inserter", "problems")

    def __init__(self, inserter: Inserter, ad: AdContext) -> None:
        self.inserter = inserter
        self.ad = ad
        self.problems: list[dict[str, str]] = []
        self._stamp = inserter.keyring.stamp(ad, ttl_s=inserter.ttl_s, redirect_hosts=redirect_hosts(ad))
        self._tokens: dict[str, str] = {}
        self._cachebuster: str | None = None
        if ad.landing_url:
            self._check("landing_url", ad.landing_url)
        private = inserter.allow_private_landings
        for host in ad.redirect_hosts:  # the HTTP API has checked them; in-process callers get the same answer
            if (problem := redirect_host_problem(host, allow_private=private)) is not None:
                self.problems.append({"field": "auction.redirect_hosts", "message": f"{host[:100]!r} {problem}"})

    def _check(self, where: str, url: str) -> bool:
        found = landing_problems(url, allow_private=self.inserter.allow_private_landings)
        self.problems += [{"field": where, "message": f"{url[:100]!r} {p}"} for p in found]
        return not found

    def _token_for(self, landing: str) -> str:
        token = self._tokens.get(landing)
        if token is None:
            token = self._tokens[landing] = self._stamp.sign(landing)
        return token

    def default_token(self) -> str:
        return self._token_for(self.ad.landing_url)

    def longest_token(self) -> int:
        return max(map(len, self._tokens.values()), default=0)

    def _click_url(self, landing: str, where: str) -> str:
        if not landing:
            if not self.ad.landing_url:
                self.problems.append({"field": where, "message": "no landing URL follows and landing_url is not set"})
            landing = self.ad.landing_url
        elif not self._check(where, landing):
            return ""
        return self.inserter.click_prefix + self._token_for(landing)

    def wrap(self, url: str) -> str:
        """The click URL that replaces an anchor's `href` value (as written in the markup)."""
        landing = html.unescape(url)
        if landing.startswith(self.inserter.click_prefix):
            return url
        return self._click_url(landing, "markup <a href>")

    def expand(self, match: re.Match[str]) -> str:
        click, landing, other = match.groups()
        if click:
            return self._click_url(html.unescape(landing), "markup ${CLICK_URL}")
        if other == "IMPRESSION_URL":
            return f"{self.inserter.public_url}{IMPRESSION_PATH}{self.default_token()}"
        if other == "CACHEBUSTER":
            if self._cachebuster is None:
                self._cachebuster = str(random.getrandbits(31))
            return self._cachebuster
        if other == "AUCTION_ID":
            return str(self.ad.auction_id_64)
        enc = quote(f"{self._click_url('', '${' + other + '}')}?{REDIRECT_PARAM}=", safe="")
        return quote(enc, safe="") if other == "CLICK_URL_ENC_ENC" else enc


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
