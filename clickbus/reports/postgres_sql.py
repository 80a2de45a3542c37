"""Every SQL statement of the PostgreSQL store, parameterised; numbered migrations applied at start.

The same statements as `sqlite_sql`, in PostgreSQL's dialect: `$n` parameters with explicit types
(a filter left out binds NULL and matches all), sums cast back to bigint, the month from `date_trunc`.
Column lists come from `schema`'s constants when this module loads, never from a request.
"""

from __future__ import annotations

import functools

from clickbus.reports.schema import DIMENSIONS, KEY, TEXT_DIMENSIONS, VALUES

_KEY_COLUMNS = ",\n    ".join(
    f"{name} {'text' if name in TEXT_DIMENSIONS or name == 'reason' else 'bigint'} NOT NULL" for name in KEY
)
_VALUE_COLUMNS = ",\n    ".join(f"{name} bigint NOT NULL DEFAULT 0" for name in VALUES)
_KEY_LIST = ", ".join(KEY)
_ALL = ", ".join((*KEY, *VALUES))
_ADD = ", ".join(f"{name} = rows.{name} + excluded.{name}" for name in VALUES)
_SUMS = ", ".join(f"SUM({name})::bigint" for name in VALUES)
_POSITIONS = ", ".join(str(i) for i in range(1, len(DIMENSIONS) + 3))

MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        f"""
CREATE TABLE rows (
    {_KEY_COLUMNS},
    {_VALUE_COLUMNS},
    PRIMARY KEY ({_KEY_LIST})
);
CREATE INDEX rows_member_hour ON rows (member, hour);
CREATE TABLE positions (grp text NOT NULL, topic text NOT NULL, part integer NOT NULL, next bigint NOT NULL,
    PRIMARY KEY (grp, topic, part));
CREATE TABLE seen (k bytea PRIMARY KEY);
""",
    ),
    (
        2,
        f"""
CREATE TABLE days (
    {_KEY_COLUMNS},
    {_VALUE_COLUMNS},
    PRIMARY KEY ({_KEY_LIST})
);
CREATE INDEX days_member_hour ON days (member, hour);
INSERT INTO days ({_ALL}) SELECT hour - hour % 86400, {", ".join(DIMENSIONS)}, reason, {_SUMS} FROM rows
    GROUP BY {_POSITIONS};
""",
    ),
    # a record's key without its generation, which sits beside it: a copy in any generation conflicts on one
    # index probe, and a block-range index finds old generations to forget at almost no cost per insert
    (
        3,
        """
DROP TABLE seen;
CREATE TABLE seen (k bytea PRIMARY KEY, gen bigint NOT NULL);
CREATE INDEX seen_gen ON seen USING brin (gen);
""",
    ),
)

LOCK_MIGRATIONS = "SELECT pg_advisory_xact_lock(7265736)"  # one starting reporter migrates at a time
LOCK_UPKEEP = "SELECT pg_advisory_xact_lock(7265737)"  # folding twice at once would count twice
CREATE_MIGRATIONS = (
    "CREATE TABLE IF NOT EXISTS migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL)"
)
APPLIED = "SELECT version FROM migrations"
RECORD_MIGRATION = "INSERT INTO migrations (version, applied_at) VALUES ($1, now())"

POSITIONS = "SELECT topic, part, next FROM positions WHERE grp = $1"
INSERT_POSITION = "INSERT INTO positions (grp, topic, part, next) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING"
MOVE_POSITION = "UPDATE positions SET next = $1 WHERE grp = $2 AND topic = $3 AND part = $4 AND next = $5"
# each key taken unless it, or the same record's key a generation before or after, is already there
SEE = "INSERT INTO seen (k, gen) SELECT * FROM unnest($1::bytea[], $2::bigint[]) ON CONFLICT DO NOTHING RETURNING k"
ADD_ROW = (
    f"INSERT INTO rows ({_ALL}) VALUES ({', '.join(f'${i}' for i in range(1, len(KEY) + len(VALUES) + 1))}) "
    f"ON CONFLICT ({_KEY_LIST}) DO UPDATE SET {_ADD}"
)
ADD_DAY = ADD_ROW.replace("INSERT INTO rows", "INSERT INTO days", 1).replace(" = rows.", " = days.")

# The order `query_args` binds them in, then one value per filtered dimension, in `DIMENSIONS` order.
QUERY_PARAMETERS = (
    "grain",
    "since",
    "until",
    "day_since",
    "day_until",
    *(f"g_{name}" for name in DIMENSIONS),
)
_N = {name: f"${i}" for i, name in enumerate(QUERY_PARAMETERS, 1)}
_TIME = (
    f"CASE {_N['grain']}::text WHEN 'hour' THEN hour WHEN 'day' THEN hour - hour % 86400"
    " WHEN 'month' THEN EXTRACT(EPOCH FROM date_trunc('month', to_timestamp(hour) AT TIME ZONE 'UTC'))::bigint END"
)
_GROUPED = ", ".join(f"CASE WHEN {_N['g_' + name]}::boolean THEN {name} END" for name in DIMENSIONS)


@functools.cache
def query(filtered: frozenset[str]) -> str:
    """The grouped read with an equality for each filtered dimension only, as `sqlite_sql.query` is built."""
    where = ""
    for i, name in enumerate((name for name in DIMENSIONS if name in filtered), len(QUERY_PARAMETERS) + 1):
        where += f" AND {name} = ${i}::{'text' if name in TEXT_DIMENSIONS else 'bigint'}"
    since, day_since, day_until, until = (
        f"{_N[name]}::bigint" for name in ("since", "day_since", "day_until", "until")
    )
    spans = (("rows", since, day_since), ("days", day_since, day_until), ("rows", day_until, until))
    parts = " UNION ALL ".join(
        f"SELECT {_ALL} FROM {table} WHERE hour >= {low} AND hour < {high}{where}" for table, low, high in spans
    )
    return (
        f"SELECT {_TIME}, {_GROUPED}, reason, {_SUMS} FROM ({parts}) AS spans"
        f" GROUP BY {_POSITIONS} ORDER BY {_POSITIONS}"
    )


# DELETE ... RETURNING takes each row as it is once its writers commit: no count added meanwhile is lost.
FOLD = (
    f"WITH gone AS (DELETE FROM rows WHERE hour < $1 AND hour % 86400 <> 0 RETURNING *)"
    f" INSERT INTO rows ({_ALL}) SELECT hour - hour % 86400, {', '.join(DIMENSIONS)}, reason, {_SUMS} FROM gone"
    f" GROUP BY {_POSITIONS} ON CONFLICT ({_KEY_LIST}) DO UPDATE SET {_ADD}"
)
DELETE_OLD = "DELETE FROM rows WHERE hour < $1"
DELETE_OLD_DAYS = "DELETE FROM days WHERE hour < $1"  # retention starts at a month: whole days only
FORGET = "DELETE FROM seen WHERE gen < $1"
