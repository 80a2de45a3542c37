"""The device class of a user agent (`mobile`, `tablet`, `desktop`, `other`), from a maintained parser.

`user_agents` reads the user agent with ua-parser's bundled rules (Browserscope's regexes, kept up to
date upstream); the class is cached per user agent, since browsers send a few thousand distinct ones,
over and over. It runs where verdicts are made (the notifier), never on the edge's redirect path.
"""

from __future__ import annotations

import functools

MOBILE = "mobile"
TABLET = "tablet"
DESKTOP = "desktop"
OTHER = "other"
CLASSES = (MOBILE, TABLET, DESKTOP, OTHER)
CACHE_SIZE = 8192
MAX_UA_CHARS = 512  # the parser's cost grows with the text; no real user agent needs more to be classed


@functools.lru_cache(maxsize=CACHE_SIZE)
def device_class(user_agent: str) -> str:
    """`mobile`, `tablet`, `desktop` or `other` (crawlers, tools, TVs, consoles, nothing)."""
    # loads the parser's rules: paid once, and only by processes that class devices (the notifier at its start)
    import user_agents  # type: ignore[import-untyped]

    if not user_agent:
        return OTHER
    parsed = user_agents.parse(user_agent[:MAX_UA_CHARS])
    if parsed.is_bot:
        return OTHER
    if parsed.is_tablet:
        return TABLET
    if parsed.is_mobile:
        return MOBILE
    if parsed.is_pc:
        return DESKTOP
    return OTHER


def preload() -> None:
    """Load the parser's rules now (regex compiling, a second or more under load) rather than at the first click."""
    device_class("")  # the parser loads on first use; "" is `other` whatever it holds
