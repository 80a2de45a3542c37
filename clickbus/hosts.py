"""What a host name is: the visitor's own, a public suffix, or a host name a browser reads as written.

`redirect_host_problem` judges an `auction.redirect_hosts` entry: appended `?r=` destinations are
followed to that host and every host under it, so an entry must be a host name (letters, digits,
hyphens and underscores in dot-separated labels, as a browser's WHATWG parser reads it unchanged:
not `.`, `*` or `%2e`), and not a public suffix: `com`, `co.uk` or `github.io` would allow every
site under them. Public suffixes come from the Public Suffix List bundled with the
`publicsuffixlist` package (its ICANN and private sections, the suffixes it lists: a name without
a dot, such as `localhost`, is refused as the visitor's own instead): the list is read from the
package, never fetched. Private hosts (see `is_private`) are refused unless `allow_private`.
"""

from __future__ import annotations

import functools
import ipaddress
import re

from ada_url import URL
from publicsuffixlist import PublicSuffixList

MAX_HOST_CHARS = 253
PRIVATE = "the visitor's own machine or network: loopback, private, link-local, localhost or a name without a dot"
_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")
# Names that reach the visitor's own machine or network (RFC 6761 localhost, RFC 6762 .local, RFC 8375
# home.arpa, ICANN's .internal); a name without a dot goes through the visitor's DNS search list.
_PRIVATE_SUFFIXES = ("localhost", "local", "internal", "home.arpa")


def is_private(host: str) -> bool:
    """Whether a browser's `host` (lower case; IPv4 dotted, IPv6 in brackets) is the visitor's machine or network."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        name = host.rstrip(".")
        return "." not in name or any(name == s or name.endswith("." + s) for s in _PRIVATE_SUFFIXES)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_global


@functools.cache
def _suffixes() -> PublicSuffixList:
    return PublicSuffixList(accept_unknown=False)  # the list bundled with the package: about 0.2 s to read, once


def is_public_suffix(host: str) -> bool:
    """Whether `host` is a public suffix (anyone may have a site under it), per the bundled Public Suffix List."""
    return bool(_suffixes().is_public(host))


@functools.lru_cache(maxsize=4096)
def redirect_host_problem(entry: str, *, allow_private: bool = False) -> str | None:
    """Why `entry` may not be a redirect host, or None when it may (private names too, with `allow_private`)."""
    address = entry.startswith("[") or entry.replace(".", "").isdigit()  # an IP literal: matched exactly
    labels = entry.split(".")
    if not address and (len(entry) > MAX_HOST_CHARS or not all(_LABEL.fullmatch(label) for label in labels)):
        return "is not a host name (letters, digits, hyphens in dot-separated labels, in ASCII)"
    try:
        read = URL(f"https://{entry}/").hostname
    except ValueError:
        read = ""
    if read != entry:
        return f"reads to a browser as {read!r}" if read else "is not a host a browser accepts"
    if not address and is_public_suffix(entry):
        return "is a public suffix: it would allow every site under it"
    if is_private(entry) and not allow_private:
        return f"is {PRIVATE}"
    return None
