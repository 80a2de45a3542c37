"""Accounting: from what the load got back, the clicks topic, the bidders and the DLQ, who was lost.

The pass condition: every click answered with a 302 is recorded, every
recorded (valid) click was answered 2xx by its bidder or sits in the
dead-letter topic, and no request produced two different clicks.
True duplicates (one token clicked twice) are judged apart, by `judge_pairs`:
exactly one click of each pair is delivered, the other judged a duplicate.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

COLUMNS = ("scenario", "sent", "answered", "recorded", "delivered", "dlq", "lost", "dup_rec", "dup_del", "result")


@dataclass(frozen=True, slots=True)
class Figures:
    """One scenario's counts; `delivered`/`dlq` are None where the scenario runs no notifier."""

    scenario: str
    sent: int
    answered: int
    recorded: int
    delivered: int | None
    dlq: int | None
    lost_records: tuple[int, ...]  # auction ids answered 302 and never recorded
    lost_deliveries: tuple[str, ...]  # click ids recorded and neither delivered nor dead-lettered
    split: int  # requests that produced two different click ids
    duplicate_records: int
    duplicate_deliveries: int
    notes: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def lost(self) -> int:
        return len(self.lost_records) + len(self.lost_deliveries)

    @property
    def passed(self) -> bool:
        clean_exit = not any(self.extra.get("exit_codes", {}).values())
        return (
            self.lost == 0 and self.split == 0 and self.answered > 0 and clean_exit and not self.extra.get("failures")
        )

    def row(self) -> tuple[str, ...]:
        def show(value: int | None) -> str:
            return "-" if value is None else str(value)

        counts = (self.sent, self.answered, self.recorded, self.delivered, self.dlq, self.lost)
        dups = (self.duplicate_records, self.duplicate_deliveries)
        return (self.scenario, *map(show, counts), *map(show, dups), "PASS" if self.passed else "FAIL")


def tally(
    scenario: str,
    statuses: Mapping[int, int],
    records: Iterable[Mapping[str, Any]],
    deliveries: Iterable[tuple[str, str]] | None,
    dead_letters: Iterable[str] | None,
    notes: Iterable[str] = (),
    **extra: Any,
) -> Figures:
    """`records`: click records read back; `deliveries`: (webhook-id, stub answer); `dead_letters`: click ids."""
    answered = {auction for auction, status in statuses.items() if status == 302}
    by_auction: dict[int, set[str]] = defaultdict(set)
    copies: Counter[str] = Counter()
    for record in records:
        by_auction[int(record["auction_id_64"])].add(str(record["click_id"]))
        copies[str(record["click_id"])] += 1
    lost_records = tuple(sorted(answered - set(by_auction)))
    split = sum(1 for ids in by_auction.values() if len(ids) > 1)
    delivered = dlq = None
    lost_deliveries: tuple[str, ...] = ()
    duplicate_deliveries = 0
    if deliveries is not None and dead_letters is not None:
        ok = Counter(webhook_id for webhook_id, answer in deliveries if answer == "200")
        dead = set(dead_letters)
        lost_deliveries = tuple(sorted(set(copies) - set(ok) - dead))
        delivered, dlq = len(set(copies) & set(ok)), len(set(copies) & dead)
        duplicate_deliveries = sum(n - 1 for n in ok.values())
    return Figures(
        scenario=scenario,
        sent=len(statuses),
        answered=len(answered),
        recorded=len(answered & set(by_auction)),
        delivered=delivered,
        dlq=dlq,
        lost_records=lost_records,
        lost_deliveries=lost_deliveries,
        split=split,
        duplicate_records=sum(copies.values()) - len(copies),
        duplicate_deliveries=duplicate_deliveries,
        notes=tuple(notes),
        extra=extra,
    )


def table(results: Iterable[Figures]) -> str:
    rows = [COLUMNS, *(figures.row() for figures in results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True)))
        for row in rows
    ]
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])


def details(figures: Figures) -> str:
    """The scenario's notes, extra figures and the first few lost ids."""
    lines = [f"[{figures.scenario}]", *(f"  {note}" for note in figures.notes)]
    lines += [f"  {key}: {value}" for key, value in figures.extra.items()]
    if figures.lost_records:
        lines.append(f"  answered but not recorded (auction ids): {list(figures.lost_records[:10])}")
    if figures.lost_deliveries:
        lines.append(f"  recorded but neither delivered nor dead-lettered: {list(figures.lost_deliveries[:10])}")
    if figures.split:
        lines.append(f"  requests with two different click ids: {figures.split}")
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class Pairs:
    """What became of true-duplicate pairs (one token clicked twice): ids are auction ids."""

    sent: int
    answered_twice: int
    caught: frozenset[int]  # one click delivered, the other judged duplicate and not delivered
    lost_records: tuple[int, ...]  # fewer records than 302s
    lost_deliveries: tuple[str, ...]  # click ids of pairs none of whose clicks was delivered
    delivered_twice: tuple[int, ...]  # both clicks delivered: the duplicate was missed


def judge_pairs(
    statuses: Mapping[int, list[int]],
    records: Iterable[Mapping[str, Any]],
    delivered: set[str],
    judged_duplicate: set[str],
) -> Pairs:
    """`statuses[auction]`: the pair's two answers; `delivered`, `judged_duplicate`: click ids."""
    ids: dict[int, set[str]] = defaultdict(set)
    for record in records:
        ids[int(record["auction_id_64"])].add(str(record["click_id"]))
    lost_records, lost_deliveries, twice, caught = [], [], [], set()
    for auction, answers in statuses.items():
        clicks = ids.get(auction, set())
        if len(clicks) < answers.count(302):
            lost_records.append(auction)
        sent_on = clicks & delivered
        if clicks and not sent_on:
            lost_deliveries += sorted(clicks)
        if len(sent_on) > 1:
            twice.append(auction)
        if len(clicks) == 2 and len(sent_on) == 1 and clicks - sent_on <= judged_duplicate:
            caught.add(auction)
    return Pairs(
        sent=len(statuses),
        answered_twice=sum(1 for answers in statuses.values() if answers == [302, 302]),
        caught=frozenset(caught),
        lost_records=tuple(lost_records),
        lost_deliveries=tuple(lost_deliveries),
        delivered_twice=tuple(twice),
    )
