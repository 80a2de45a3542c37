"""`clickbus status`: a terminal view of a running service, computed from two scrapes of its /metrics."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from clickbus.metrics import VALID, BreakerState

SCRAPE_TIMEOUT_S = 5.0
Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The samples of one scrape, by sample name and sorted labels."""

    at: float
    samples: dict[str, dict[Labels, float]]

    def series(self, name: str) -> dict[Labels, float]:
        return self.samples.get(name, {})

    def by(self, name: str, label: str) -> dict[str, float]:
        """Sum of a sample over every label but `label`."""
        sums: dict[str, float] = defaultdict(float)
        for labels, value in self.series(name).items():
            sums[dict(labels).get(label, "")] += value
        return dict(sums)

    def total(self, name: str) -> float:
        return sum(self.series(name).values())


def parse(text: str, at: float) -> Snapshot:
    """A snapshot of a Prometheus text exposition."""
    samples: dict[str, dict[Labels, float]] = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
    return Snapshot(at, dict(samples))


def scrape(url: str) -> Snapshot:
    """Fetch and parse `url`; raise OSError when the service cannot be reached."""
    with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT_S) as response:
        text = response.read().decode("utf-8")
    return parse(text, time.monotonic())


def _rate(before: Snapshot, after: Snapshot, name: str, label: str) -> dict[str, float]:
    dt = max(after.at - before.at, 1e-9)
    old = before.by(name, label)
    return {key: max(0.0, value - old.get(key, 0.0)) / dt for key, value in after.by(name, label).items()}


def quantile(snapshot: Snapshot, name: str, q: float) -> float | None:
    """The upper bound of the histogram bucket holding quantile `q`, over every series of `name`."""
    buckets: dict[float, float] = defaultdict(float)
    for labels, value in snapshot.series(f"{name}_bucket").items():
        buckets[float(dict(labels)["le"])] += value
    if not buckets or buckets[max(buckets)] == 0:
        return None
    bounds = sorted(buckets)
    rank = q * buckets[bounds[-1]]
    return next(b for b in bounds if buckets[b] >= rank)


def _table(title: str, columns: Iterable[str], rows: Iterable[Iterable[str]], caption: str | None = None) -> Table:
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left", expand=False)
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    return table


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else ("> 2500" if seconds == float("inf") else f"{seconds * 1000:.1f}")


def traffic(before: Snapshot, after: Snapshot) -> Table:
    clicks = _rate(before, after, "clickbus_clicks_total", "source")
    impressions = _rate(before, after, "clickbus_impressions_total", "source")
    sources = sorted(set(clicks) | set(impressions))
    rows = [(s, f"{clicks.get(s, 0):.1f}", f"{impressions.get(s, 0):.1f}") for s in sources]
    rows.append(("all", f"{sum(clicks.values()):.1f}", f"{sum(impressions.values()):.1f}"))
    redirect = (
        f"redirect p50 {_ms(quantile(after, 'clickbus_redirect_seconds', 0.5))} ms,"
        f" p99 {_ms(quantile(after, 'clickbus_redirect_seconds', 0.99))} ms"
    )
    return _table("Traffic", ("source", "clicks/s", "impressions/s"), rows, caption=redirect)


def _verdicts(snapshot: Snapshot, kind: str) -> dict[str, float]:
    """The notifier's verdicts on records of `kind` (`click`, `impression`), by reason."""
    counts: dict[str, float] = defaultdict(float)
    for labels, value in snapshot.series("clickbus_verdicts_total").items():
        d = dict(labels)
        if d.get("kind") == kind:
            counts[d.get("reason", "")] += value
    return dict(counts)


def _share(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def validity(after: Snapshot) -> Table:
    """The notifier's verdicts (the one judgement; the edge itself only flags expired tokens)."""
    clicks, impressions = _verdicts(after, "click"), _verdicts(after, "impression")
    all_clicks, all_impressions = sum(clicks.values()), sum(impressions.values())
    order = sorted(set(clicks) | set(impressions), key=lambda r: (r != VALID, r))
    rows = [
        (
            r,
            f"{clicks.get(r, 0):.0f}",
            _share(clicks.get(r, 0), all_clicks),
            f"{impressions.get(r, 0):.0f}",
            _share(impressions.get(r, 0), all_impressions),
        )
        for r in order
    ]
    caption = None if rows else "no verdicts yet: is the notifier running?"
    columns = ("reason", "clicks", "share", "impressions", "share")
    return _table("Validity mix (notifier's verdicts since start)", columns, rows, caption=caption)


def log_and_spool(before: Snapshot, after: Snapshot) -> Table:
    appends = _rate(before, after, "clickbus_log_append_seconds_count", "outcome")
    lag = after.by("clickbus_consumer_lag_records", "group")
    rows = [
        ("appends/s", f"{appends.get('ok', 0):.1f}"),
        ("append errors/s", f"{appends.get('error', 0):.1f}"),
        ("append p99 (ms)", _ms(quantile(after, "clickbus_log_append_seconds", 0.99))),
        *((f"lag: {group}", f"{value:.0f}") for group, value in sorted(lag.items())),
        ("retry queue", f"{after.total('clickbus_retry_queue_records'):.0f}"),
        ("spool records", f"{after.total('clickbus_spool_records'):.0f}"),
        ("spool oldest (s)", f"{after.total('clickbus_spool_oldest_age_seconds'):.1f}"),
    ]
    return _table("Log and spool", ("", "value"), rows)


def _outcomes(snapshot: Snapshot) -> dict[str, dict[str, float]]:
    """Delivery outcomes per member: `{member: {status: count}}`."""
    counts: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for labels, value in snapshot.series("clickbus_deliveries_total").items():
        d = dict(labels)
        counts[d["member"]][d["status"]] += value
    return counts


def _health(statuses: dict[str, float], state: str) -> str:
    """One word for a bidder: `down` with its breaker open, `failing` when most attempts failed."""
    if state == "open":
        return "down"
    failed = sum(v for k, v in statuses.items() if k in ("retry", "dead"))
    if failed and failed >= statuses.get("delivered", 0):
        return "failing"
    return "ok" if statuses.get("delivered", 0) else "-"


def bidders(before: Snapshot, after: Snapshot) -> Table:
    counts = _outcomes(after)
    delivered_rate = _rate(before, after, "clickbus_deliveries_total", "member")  # every outcome: attempts/s
    dead = after.by("clickbus_dead_letters_total", "member")
    breakers = after.by("clickbus_breaker_state", "member")
    members = sorted(set(counts) | set(dead) | set(breakers), key=lambda m: (len(m), m))
    rows = []
    for member in members:
        statuses = counts.get(member, {})
        others = ", ".join(f"{k} {v:.0f}" for k, v in sorted(statuses.items()) if k != "delivered")
        state = BreakerState(int(breakers[member])).name.lower() if member in breakers else "-"
        rows.append(
            (
                member,
                _health(statuses, state),
                f"{delivered_rate.get(member, 0):.1f}",
                f"{statuses.get('delivered', 0):.0f}",
                others or "-",
                f"{dead.get(member, 0):.0f}",
                state,
            )
        )
    columns = ("member", "health", "outcomes/s", "delivered", "other outcomes", "dead letters", "breaker")
    return _table("Bidders (since start)", columns, rows)


def view(before: Snapshot, after: Snapshot) -> Group:
    """Every table of the status view."""
    return Group(traffic(before, after), validity(after), log_and_spool(before, after), bidders(before, after))


def watch(url: str, *, interval_s: float, once: bool, console: Console | None = None) -> int:
    """Print the view once (two scrapes `interval_s` apart) or refresh it until interrupted."""
    console = console if console is not None else Console()
    try:
        before = scrape(url)
        time.sleep(interval_s)
        after = scrape(url)
    except (OSError, urllib.error.URLError) as exc:
        console.print(f"clickbus status: cannot read {url}: {exc}")
        return 1
    if once:
        console.print(view(before, after))
        return 0
    with Live(view(before, after), console=console, auto_refresh=False) as live:
        try:
            while True:
                time.sleep(interval_s)
                before, after = after, scrape(url)
                live.update(view(before, after), refresh=True)
        except KeyboardInterrupt:
            return 0
        except OSError as exc:
            console.print(f"clickbus status: lost {url}: {exc}")
            return 1
