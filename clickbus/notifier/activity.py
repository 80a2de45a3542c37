"""Activity windows: how many clicks, and with how many user agents, one client address made on one ad lately.

General invalid-traffic filtration by activity (MRC): from one address on one ad within the click
window, the clicks after the `max_clicks`th of any kind, and those whose user agent is not among
the first `max_agents` distinct ones, are invalid (reason `activity`). The address is the record's
`client_key`, the keyed hash of the full address that dedup uses; the ad is its `ad_key`. Clicks
without either (server-side clicks, records from before them) are not judged.

A window keeps, per (member, address, ad), the times of at most `max_clicks` recent clicks and the
user agents let through (at most `max_agents`, each with when it was last seen): enough to judge
exactly whatever the traffic, in bounded memory per key. Keys are kept in order of their last
click, so expired ones are dropped from the front without scanning. Like dedup windows there is
one per partition; a check counts the windows of the topic's other partitions too (`also`), since
one address's clicks with different user agents have different dedup keys, so different partitions.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Sequence

from clickbus.notifier.dedup import key_hash
from clickbus.records import ClickRecord, Source


class _Seen:
    __slots__ = ("agents", "times")

    def __init__(self, max_clicks: int) -> None:
        self.times: deque[int] = deque(maxlen=max_clicks)  # the latest clicks' times, oldest first
        self.agents: dict[int, int] = {}  # user agent hash -> when last seen, for the agents let through


def activity_key(record: ClickRecord) -> bytes | None:
    """The (member, address, ad) a click counts for, or None when it is not judged by activity."""
    if record.source == Source.SERVER or not record.client_key or not record.ad_key:
        return None
    return f"{record.member_id}/{record.client_key}/{record.ad_key}".encode()


class ActivityWindow:
    """Per (member, address, ad): recent click times and the user agents let through, within `window_ms`."""

    __slots__ = ("_keys", "_now", "max_agents", "max_clicks", "window_ms")

    def __init__(self, window_ms: int, *, max_agents: int, max_clicks: int) -> None:
        self.window_ms = window_ms
        self.max_agents = max_agents
        self.max_clicks = max_clicks
        self._keys: OrderedDict[int, _Seen] = OrderedDict()
        self._now = 0

    def __len__(self) -> int:
        return len(self._keys)

    def check_and_add(self, record: ClickRecord, ts_ms: int, also: Sequence[ActivityWindow] = ()) -> bool:
        """True when `record` is too much activity (here and in `also`); count it here either way."""
        key = activity_key(record)
        if key is None:
            return False
        h, agent = key_hash(key), key_hash(record.user_agent.encode("utf-8", "replace"))
        windows = [self, *also]
        clicks = sum(w._clicks(h, ts_ms) for w in windows)
        agents = set().union(*(w._agents(h, ts_ms) for w in windows))
        agent_ok = agent in agents or len(agents) < self.max_agents
        self._add(h, ts_ms, agent if agent_ok else None)
        return clicks >= self.max_clicks or not agent_ok

    def _clicks(self, h: int, ts_ms: int) -> int:
        seen = self._current(h, ts_ms)
        return len(seen.times) if seen else 0

    def _agents(self, h: int, ts_ms: int) -> set[int]:
        seen = self._current(h, ts_ms)
        return set(seen.agents) if seen else set()

    def _current(self, h: int, ts_ms: int) -> _Seen | None:
        """The key's entry with what left the window dropped (None when nothing is left)."""
        self._advance(ts_ms)
        seen = self._keys.get(h)
        if seen is None:
            return None
        since = self._now - self.window_ms
        while seen.times and seen.times[0] <= since:
            seen.times.popleft()
        for agent in [a for a, last in seen.agents.items() if last <= since]:
            del seen.agents[agent]
        return seen

    def _add(self, h: int, ts_ms: int, agent: int | None) -> None:
        seen = self._keys.get(h)
        if seen is None:
            seen = self._keys[h] = _Seen(self.max_clicks)
        else:
            self._keys.move_to_end(h)
        seen.times.append(self._now)
        if agent is not None:
            seen.agents[agent] = self._now

    def _advance(self, ts_ms: int) -> None:
        """Move the window's clock to `ts_ms` (never back: log order) and drop keys idle for a window."""
        self._now = max(self._now, ts_ms)
        since = self._now - self.window_ms
        keys = self._keys
        while keys:
            h, seen = next(iter(keys.items()))
            if seen.times and seen.times[-1] > since:
                break
            del keys[h]
