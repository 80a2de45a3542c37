"""Every SQL statement of the SQLite store, parameterised; numbered migrations applied at start.

Column lists come from `schema`'s constants (never from a request); every value, filters included,
is a bound parameter. A report reads its whole days from `days`, the same counts summed by day as
they are written, and only the hours around them from `rows`: a 90-day report by day reads 90 rows
per key instead of 2,160, through an index led by the one column every filtered report names.
"""

from __future__ import annotations

import functools

from clickbus.reports.schema import BUCKET_COLUMNS, COUNTERS, DIMENSIONS, KEY, TEXT_DIMENSIONS, VALUES

_KEY_COLUMNS = ",\n    ".join(
    f"{name} {'TEXT' if name in TEXT_DIMENSIONS or name == 'reason' else 'INTEGER'} NOT NULL" for name in KEY
)
_VALUE_COLUMNS = ",\n    ".join(f"{name} INTEGER NOT NULL DEFAULT 0" for name in VALUES)
_KEY_LIST = ", ".join(KEY)
_ALL = ", ".join((*KEY, *VALUES))
_ADD = ", ".join(f"{name} = {name} + excluded.{name}" for name in VALUES)
_SUMS = ", ".join(f"SUM({name})" for name in VALUES)

MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        f"""
CREATE TABLE rows (
    {_KEY_COLUMNS},
    {_VALUE_COLUMNS},
    PRIMARY KEY ({_KEY_LIST})
) WITHOUT ROWID;
CREATE INDEX rows_member_hour ON rows (member, hour);
CREATE TABLE positions (grp TEXT NOT NULL, topic TEXT NOT NULL, part INTEGER NOT NULL, next INTEGER NOT NULL,
    PRIMARY KEY (grp, topic, part)) WITHOUT ROWID;
CREATE TABLE seen (k BLOB PRIMARY KEY) WITHOUT ROWID;
""",
    ),
    (
        2,
        f"""
CREATE TABLE days (
    {_KEY_COLUMNS},
    {_VALUE_COLUMNS},
    PRIMARY KEY ({_KEY_LIST})
) WITHOUT ROWID;
CREATE INDEX days_member_hour ON days (member, hour);
INSERT INTO days ({_ALL}) SELECT hour - hour % 86400, {", ".join(DIMENSIONS)}, reason, {_SUMS} FROM rows
    GROUP BY {", ".join(str(i) for i in range(1, len(DIMENSIONS) + 3))}
""",
    ),
    (3, "DELETE FROM seen"),  # keys now start with their generation (`counting`), not their record's time
)

CREATE_MIGRATIONS = "CREATE TABLE IF NOT EXISTS migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)"
APPLIED = "SELECT version FROM migrations"
RECORD_MIGRATION = "INSERT INTO migrations (version, applied_at) VALUES (?, strftime('%s', 'now'))"

POSITIONS = "SELECT topic, part, next FROM positions WHERE grp = ?"
INSERT_POSITION = "INSERT INTO positions (grp, topic, part, next) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING"
MOVE_POSITION = "UPDATE positions SET next = ? WHERE grp = ? AND topic = ? AND part = ? AND next = ?"
# taken unless it, or the same record's key a generation before or after, is already there (`seen_among`)
SEE_MANY = "INSERT INTO seen (k) VALUES (?) ON CONFLICT DO NOTHING"


@functools.cache
def seen_among(count: int) -> str:
    """Which of `count` keys are already seen."""
    return f"SELECT k FROM seen WHERE k IN ({', '.join('?' * count)})"


NEWEST_SEEN = "SELECT max(k) FROM seen"
ADD_ROW = (
    f"INSERT INTO rows ({_ALL}) VALUES ({', '.join('?' * (len(KEY) + len(VALUES)))}) "
    f"ON CONFLICT ({_KEY_LIST}) DO UPDATE SET {_ADD}"
)
ADD_DAY = ADD_ROW.replace("INSERT INTO rows", "INSERT INTO days", 1)

_TIME = (
    "CASE :grain WHEN 'hour' THEN hour WHEN 'day' THEN hour - hour % 86400"
    " WHEN 'month' THEN CAST(strftime('%s', hour, 'unixepoch', 'start of month') AS INTEGER) END"
)
_GROUPED = ", ".join(f"CASE WHEN :g_{name} THEN {name} END" for name in DIMENSIONS)
_POSITIONS = ", ".join(str(i) for i in range(1, len(DIMENSIONS) + 3))


@functools.cache
def query(filtered: frozenset[str]) -> str:
    """The grouped read with an equality for each filtered dimension (only those: `x = ? OR ? IS NULL` defeats indexes).

    Hours in [since, day_since) and [day_until, until) come from `rows`, whole days between from `days`.
    """
    where = "".join(f" AND {name} = :f_{name}" for name in DIMENSIONS if name in filtered)
    spans = (("rows", ":since", ":day_since"), ("days", ":day_since", ":day_until"), ("rows", ":day_until", ":until"))
    parts = " UNION ALL ".join(
        f"SELECT {_ALL} FROM {table} WHERE hour >= {low} AND hour < {high}{where}" for table, low, high in spans
    )
    return f"SELECT {_TIME}, {_GROUPED}, reason, {_SUMS} FROM ({parts}) GROUP BY {_POSITIONS} ORDER BY {_POSITIONS}"


FOLD = (
    f"INSERT INTO rows ({_ALL}) SELECT hour - hour % 86400, {', '.join(DIMENSIONS)}, reason, {_SUMS} FROM rows"
    f" WHERE hour < ? AND hour % 86400 <> 0 GROUP BY {_POSITIONS}"
    f" ON CONFLICT ({_KEY_LIST}) DO UPDATE SET {_ADD}"
)
DROP_FOLDED = "DELETE FROM rows WHERE hour < ? AND hour % 86400 <> 0"
DELETE_OLD = "DELETE FROM rows WHERE hour < ?"
DELETE_OLD_DAYS = "DELETE FROM days WHERE hour < ?"  # retention starts at a month: whole days only
FORGET = "DELETE FROM seen WHERE k < ?"

__all__ = ["BUCKET_COLUMNS", "COUNTERS"]
