"""Single-row INSERTs into a table with many active parts: the insert backpressure check.

Before it writes, every INSERT into a MergeTree table checks whether it must be delayed or
refused for too many parts (``parts_to_delay_insert``, ``parts_to_throw_insert``). Upstream
ClickHouse PR 114754 (merged 2026-08) found that check scanning every partition under the
shared parts lock: with 20 000 active parts and 32 writers, 13.2 shared acquisitions per
insert holding 2 577 µs each, against 1.0 and 12.5 µs after the fix. Here the INSERTs are
the measured queries, so each one's own counters say how many times it took the parts lock
and for how long; the three schemas differ only in how many parts the table has, which is
what the check's cost grows with if it scans them.

Every schema has one part per (namespace, day) partition; each measured INSERT adds one
part to a partition that exists, so the counts grow a little during a run (merges are
stopped while measuring). The dataset serves one run: a run that writes rebuilds it.
"""

import datetime as dt

from lockprof import Query, Scenario, Schema

NAMESPACES = 100
FIRST_DAY = dt.datetime(2026, 1, 1)
SIZES = {"parts_2500": 25, "parts_10000": 100, "parts_20000": 200}  # schema -> days (parts = 100 x days)

COLUMNS = """
    namespace UInt16,
    ts DateTime,
    value Float64
"""


def schema(name: str, days: int) -> Schema:
    ddl = f"""
        CREATE TABLE {{table}} ({COLUMNS})
        ENGINE = MergeTree
        PARTITION BY (namespace, toDate(ts))
        ORDER BY (namespace, ts)
    """
    populate = f"""
        INSERT INTO {{table}}
        SELECT number % {NAMESPACES} AS namespace,
               toDateTime('{FIRST_DAY:%Y-%m-%d %H:%M:%S}') + intDiv(number, {NAMESPACES}) * 86400 AS ts,
               number AS value
        FROM numbers({NAMESPACES * days})
    """
    return Schema(name, ddl, populate=[populate],
                  description=f"{NAMESPACES * days} active parts, one per (namespace, day)")


def one_row(rng):
    """A row for an existing partition: a random namespace and day of the smallest table."""
    day = FIRST_DAY + dt.timedelta(days=rng.randrange(min(SIZES.values())), seconds=rng.randrange(86400))
    return {"ns": rng.randrange(NAMESPACES), "ts": day.strftime("%Y-%m-%d %H:%M:%S"), "v": rng.random()}


scenario = Scenario(
    name="insert_backpressure",
    description="Single-row INSERTs measured as queries, into tables of 2 500, 10 000 and 20 000 active parts.",
    schemas=[schema(name, days) for name, days in SIZES.items()],
    queries=[Query("insert_one_row",
                   "INSERT INTO {table} SELECT {ns:UInt16}, toDateTime({ts:String}), {v:Float64}",
                   params=one_row)],
    concurrency=(1, 2),
    warmup_s=0.5,
    duration_s=3.0,
)
