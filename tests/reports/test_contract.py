"""The report store contract: the same checks on every adapter (SQLite, PostgreSQL)."""

from __future__ import annotations

import pytest

from clickbus.reports.counting import seen_key
from clickbus.reports.port import Batch, Event, Fenced, Move, Query, RawRow, Store
from clickbus.reports.schema import BUCKETS, COUNTERS, DIMENSIONS, Key, bucket

H = 1_796_468_400  # an hour (2026-12-03T11:00Z... any multiple of 3600)
DAY = H - H % 86400
GROUP = "g"


def key(hour: int = H, *, creative: int = 5, member: int = 13, reason: str = "", device: str = "desktop") -> Key:
    dims: dict[str, int | str] = {name: 0 for name in DIMENSIONS}
    dims |= {"placement": "", "country": "", "source": "redirect", "test": 0}
    dims |= {"member": member, "creative": creative, "device": device}
    return (hour, *(dims[name] for name in DIMENSIONS), reason)


def click(seen: bytes, **kw: object) -> Event:
    return Event(seen, key(**kw), (0, 1, 0, 0, 0))  # type: ignore[arg-type]


def delivered(seen: bytes, ms: float, **kw: object) -> Event:
    return Event(seen, key(**kw), (0, 0, 1, 0, 0), bucket(ms))  # type: ignore[arg-type]


async def rows(store: Store, by: tuple[str, ...] = (), grain: str | None = None, **filters: object) -> list[RawRow]:
    query = Query(H - 86400 * 400, H + 86400, by, grain, tuple(filters.items()))  # type: ignore[arg-type]
    return [row async for row in store.query(query)]


def values(row: RawRow) -> dict[str, int]:
    start = 1 + len(DIMENSIONS) + 1
    return dict(zip(COUNTERS, row[start : start + len(COUNTERS)], strict=True))  # type: ignore[arg-type]


def histogram(row: RawRow) -> list[int]:
    return list(row[-BUCKETS:])  # type: ignore[arg-type]


async def test_counts_are_summed_by_the_dimensions_asked(store: Store) -> None:
    events = [click(b"a", creative=5), click(b"b", creative=5), click(b"c", creative=6), click(b"d", reason="bot")]
    assert await store.apply(Batch(GROUP, [Move("deliveries", 0, None, 4)], events)) == 4
    got = await rows(store, ("creative",))
    assert [(row[4], row[10], values(row)["clicks"]) for row in got] == [(5, "", 2), (5, "bot", 1), (6, "", 1)]
    assert all(row[0] is None and row[1] is None for row in got)  # no time grain, member not grouped


async def test_a_record_seen_before_is_not_counted_again(store: Store) -> None:
    await store.apply(Batch(GROUP, [Move("deliveries", 0, None, 1)], [click(b"a")]))
    added = await store.apply(Batch(GROUP, [Move("deliveries", 0, 1, 3)], [click(b"a"), click(b"b")]))
    assert added == 1
    assert [values(row)["clicks"] for row in await rows(store)] == [2]


async def test_positions_move_with_the_counts_and_a_stale_writer_is_fenced(store: Store) -> None:
    await store.apply(Batch(GROUP, [Move("deliveries", 0, None, 10), Move("deliveries", 1, None, 3)], [click(b"a")]))
    assert await store.positions(GROUP) == {("deliveries", 0): 10, ("deliveries", 1): 3}
    assert await store.positions("other") == {}
    for stale in (None, 9):
        with pytest.raises(Fenced):
            moves = [Move("deliveries", 1, 3, 4), Move("deliveries", 0, stale, 11)]
            await store.apply(Batch(GROUP, moves, [click(b"b")]))
    assert await store.positions(GROUP) == {("deliveries", 0): 10, ("deliveries", 1): 3}  # nothing of it stayed
    assert [values(row)["clicks"] for row in await rows(store)] == [1]
    assert await store.apply(Batch(GROUP, [Move("deliveries", 0, 10, 11)], [click(b"b")])) == 1  # b was not kept


async def test_latency_histograms_add_up(store: Store) -> None:
    events = [delivered(b"a", 12), delivered(b"b", 12.5), delivered(b"c", 900, creative=6)]
    await store.apply(Batch(GROUP, [Move("deliveries", 0, None, 3)], events))
    (row,) = await rows(store)
    assert values(row)["delivered"] == 3
    assert histogram(row)[bucket(12)] == 2 and histogram(row)[bucket(900)] == 1 and sum(histogram(row)) == 3


async def test_time_grains_and_filters(store: Store) -> None:
    events = [click(b"a"), click(b"b", hour=H + 3600), click(b"c", hour=H - 86400 * 40), click(b"d", member=14)]
    await store.apply(Batch(GROUP, [Move("deliveries", 0, None, 4)], events))
    by_hour = await rows(store, (), "hour", member=13)
    assert [(row[0], values(row)["clicks"]) for row in by_hour] == [(H - 86400 * 40, 1), (H, 1), (H + 3600, 1)]
    by_day = await rows(store, ("member",), "day")
    assert [(row[0], row[1], values(row)["clicks"]) for row in by_day] == [
        (DAY - 86400 * 40, 13, 1),
        (DAY, 13, 2),
        (DAY, 14, 1),
    ]
    by_month = await rows(store, (), "month", device="desktop", test=0)
    assert [values(row)["clicks"] for row in by_month] == [1, 3]
    assert await rows(store, (), None, creative=99) == []


async def test_a_report_by_day_reads_whole_days_and_the_hours_around_them_alike(store: Store) -> None:
    # whole days come from the day rows, the hours of the partial days at each end from the hourly rows
    hours = [DAY - 86400 * 3 + 3600 * i for i in range(0, 4 * 24, 5)]
    events = [click(b"%d" % i, hour=hour, creative=i % 3) for i, hour in enumerate(hours)]
    events += [click(b"x%d" % i, hour=hour, member=14) for i, hour in enumerate(hours)]
    await store.apply(Batch(GROUP, [Move("deliveries", 0, None, len(events))], events))
    since, until = DAY - 86400 * 3 + 7 * 3600, DAY + 13 * 3600
    expected: dict[tuple[int, int], int] = {}
    for i, hour in enumerate(hours):
        if since <= hour < until:
            expected[(hour - hour % 86400, i % 3)] = expected.get((hour - hour % 86400, i % 3), 0) + 1
    query = Query(since, until, ("creative",), "day", (("member", 13),))
    got = {(row[0], row[4]): values(row)["clicks"] async for row in store.query(query)}
    assert got == expected
    month = [row async for row in store.query(Query(since, until, (), "month", (("member", 13),)))]
    assert [values(row)["clicks"] for row in month] == [sum(expected.values())]


async def test_maintenance_folds_old_hours_into_days_and_deletes_past_retention(store: Store) -> None:
    old = DAY - 86400 * 40
    events = [click(b"a", hour=old + 3600), click(b"b", hour=old + 7200), click(b"c", hour=old), click(b"d")]
    events.append(click(b"e", hour=DAY - 86400 * 400))
    await store.apply(Batch(GROUP, [Move("deliveries", 0, None, 5)], events))
    await store.maintain(fold_before=DAY - 86400 * 35, delete_before=DAY - 86400 * 395)
    got = await rows(store, (), "hour")
    assert [(row[0], values(row)["clicks"]) for row in got] == [(old, 3), (H, 1)]
    assert sum(values(row)["clicks"] for row in await rows(store)) == 4


async def test_copies_count_once_across_a_generation_and_keys_are_kept_two_generations(store: Store) -> None:
    def logged(record: str, generation: int) -> Event:
        return Event(seen_key(record, 1, 1, generation), key(), (0, 1, 0, 0, 0))

    first = [logged("00000000-0000-7000-8000-00000000000a", 10), logged("00000000-0000-7000-8000-00000000000b", 11)]
    assert await store.apply(Batch(GROUP, [Move("deliveries", 0, None, 2)], first)) == 2
    # copies logged a generation later (across the window's edge) or earlier (another host's clock), and in one batch
    copies = [logged("00000000-0000-7000-8000-00000000000a", 11), logged("00000000-0000-7000-8000-00000000000b", 10)]
    copies += [logged("00000000-0000-7000-8000-00000000000c", 11), logged("00000000-0000-7000-8000-00000000000c", 12)]
    assert await store.apply(Batch(GROUP, [Move("deliveries", 0, 2, 6)], copies)) == 1
    await store.apply(Batch(GROUP, [Move("deliveries", 0, 6, 7)], [logged("00000000-0000-7000-8000-00000000000d", 13)]))
    await store.maintain(fold_before=0, delete_before=0)  # keeps generations 12 and 13: a (10) and b (11) forgotten
    late = [logged("00000000-0000-7000-8000-00000000000a", 10), logged("00000000-0000-7000-8000-00000000000d", 12)]
    assert await store.apply(Batch(GROUP, [Move("deliveries", 0, 7, 9)], late)) == 1  # a again; d still known


async def test_starting_twice_applies_each_migration_once(store: Store) -> None:
    await store.apply(Batch(GROUP, [Move("deliveries", 0, None, 1)], [click(b"a")]))
    await store.stop()
    await store.start()
    assert [values(row)["clicks"] for row in await rows(store)] == [1]
