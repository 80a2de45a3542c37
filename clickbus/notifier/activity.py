"""Activity windows: how many clicks, and with how many user agents, one client address made on one ad lately.

General invalid-traffic filtration by activity (MRC): from one address on one ad within the click
window, the clicks after the `max_clicks`th of any kind, and those whose user agent is not among
the first `max_agents` distinct ones, are invalid (reason `activity`). The address is the record's
`client_key`, the keyed hash of the full address that dedup uses; the ad is its `ad_key`. Clicks
without either (server-side clicks, records from before them) are not judged.

A window keeps, per (member, address, ad), the times of at most `max_clicks` recent clicks and the
user agents let through (at most `max_agents`, each with when it was last seen): enough to judge
exactly whatever the traffic, in bounded memory per key. Most keys see one click, so a key's first
click is kept as one int (its time, and its user agent's 60-bit hash) and only a second click makes
it an object; the hash and time of every click also go into two `array('q')` rings in arrival order,
as in `DedupWindow`, so keys whose last click left the window are dropped from the front without
scanning. That costs about 150 bytes per key, where an object per key cost over 1 KB (measured with
tracemalloc over 50,000 keys). Like dedup windows there is one per partition; a check counts the
windows of the topic's other partitions too (`also`), since one address's clicks with different user
agents have different dedup keys, so different partitions.
"""

from __future__ import annotations

from array import array
from collections import deque
from collections.abc import Sequence, Set

from clickbus.notifier.dedup import key_hash
from clickbus.records import ClickRecord, Source

_AGENT = 1 << 60  # in a one-click entry: the user agent was let through (its hash is in the low 60 bits)
_TIME_SHIFT = 61
_NO_AGENTS: frozenset[int] = frozenset()


class _Seen:
    """A key with more than one click in the window."""

    __slots__ = ("agents", "times")

    def __init__(self, max_clicks: int) -> None:
        self.times: deque[int] = deque(maxlen=max_clicks)  # the latest clicks' times, oldest first
        self.agents: dict[int, int] = {}  # user agent hash -> when last seen, for the agents let through


def activity_key(record: ClickRecord) -> bytes | None:
    """The (member, address, ad) a click counts for, or None when it is not judged by activity."""
    if record.source == Source.SERVER or not record.client_key or not record.ad_key:
        return None
    return f"{record.member_id}/{record.client_key}/{record.ad_key}".encode()


def _latest(entry: int | _Seen) -> int:
    return entry >> _TIME_SHIFT if isinstance(entry, int) else entry.times[-1]


class ActivityWindow:
    """Per (member, address, ad): recent click times and the user agents let through, within `window_ms`."""

    __slots__ = ("_hashes", "_head", "_keys", "_now", "_times", "max_agents", "max_clicks", "window_ms")

    def __init__(self, window_ms: int, *, max_agents: int, max_clicks: int) -> None:
        self.window_ms = window_ms
        self.max_agents = max_agents
        self.max_clicks = max_clicks
        self._keys: dict[int, int | _Seen] = {}  # one click: (time << 61) | _AGENT? | agent hash
        self._hashes = array("q")
        self._times = array("q")
        self._head = 0
        self._now = 0

    def __len__(self) -> int:
        return len(self._keys)

    def check_and_add(self, record: ClickRecord, ts_ms: int, also: Sequence[ActivityWindow] = ()) -> bool:
        """True when `record` is too much activity (here and in `also`); count it here either way."""
        key = activity_key(record)
        if key is None:
            return False
        h, agent = key_hash(key), key_hash(record.user_agent.encode("utf-8", "replace"))
        self._advance(ts_ms)
        clicks, agents = self._view(h)
        for other in also:
            more, theirs = other._view(h, ts_ms)
            clicks += more
            agents = agents | theirs if theirs else agents
        agent_ok = agent in agents or len(agents) < self.max_agents
        self._add(h, agent if agent_ok else None)
        return clicks >= self.max_clicks or not agent_ok

    def _view(self, h: int, ts_ms: int | None = None) -> tuple[int, Set[int]]:
        """The key's clicks and agents let through within the window (`ts_ms`: move the window's clock first)."""
        if ts_ms is not None:
            self._advance(ts_ms)
        entry = self._keys.get(h)
        if entry is None:
            return 0, _NO_AGENTS
        if isinstance(entry, int):
            return 1, frozenset((entry & (_AGENT - 1),)) if entry & _AGENT else _NO_AGENTS
        since = self._now - self.window_ms
        while entry.times and entry.times[0] <= since:
            entry.times.popleft()
        for gone in [a for a, last in entry.agents.items() if last <= since]:
            del entry.agents[gone]
        return len(entry.times), entry.agents.keys()

    def _add(self, h: int, agent: int | None) -> None:
        now = self._now
        entry = self._keys.get(h)
        if entry is None:
            self._keys[h] = (now << _TIME_SHIFT) | (_AGENT | agent if agent is not None else 0)
        else:
            if isinstance(entry, int):  # a second click: the key becomes an object
                seen = _Seen(self.max_clicks)
                seen.times.append(entry >> _TIME_SHIFT)
                if entry & _AGENT:
                    seen.agents[entry & (_AGENT - 1)] = entry >> _TIME_SHIFT
                self._keys[h] = entry = seen
            entry.times.append(now)
            if agent is not None:
                entry.agents[agent] = now
        self._hashes.append(h)
        self._times.append(now)

    def _advance(self, ts_ms: int) -> None:
        """Move the window's clock to `ts_ms` (never back: log order); drop keys whose last click left it."""
        self._now = max(self._now, ts_ms)
        since = self._now - self.window_ms
        head, hashes, times, keys = self._head, self._hashes, self._times, self._keys
        end = len(times)
        while head < end and times[head] <= since:
            entry = keys.get(hashes[head])
            if entry is not None and _latest(entry) <= since:
                del keys[hashes[head]]
            head += 1
        self._head = head
        if head > 4096 and head * 2 > end:  # compact once the dead prefix dominates
            del hashes[:head]
            del times[:head]
            self._head = 0
