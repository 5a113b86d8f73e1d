"""The Cloudflare case: a per-tenant billing query under two partition keys.

The table holds 200 tenants (namespaces) over 50 days. Partitioned by day it has
a few dozen parts; partitioned by (namespace, day) every tenant-day is its own
part, 10 000 in all. A tenant's billing query reads the same rows either way,
yet must plan over every part of the table: the parts lock is where that shows.
"""

import datetime as dt

from lockprof import Query, Scenario, Schema

NAMESPACES = 200
DAYS = 50
ROWS_PER_TENANT_DAY = 50
FIRST_DAY = dt.datetime(2026, 1, 1)

COLUMNS = """
    namespace UInt16,
    index_id UInt32,
    ts DateTime,
    value Float64,
    sample_interval Float64,
    blob String
"""

POPULATE = f"""
INSERT INTO {{table}}
SELECT
    number % {NAMESPACES} AS namespace,
    rand32() % 1000 AS index_id,
    toDateTime('{FIRST_DAY:%Y-%m-%d %H:%M:%S}') + intDiv(number, {NAMESPACES}) % {DAYS} * 86400
        + intDiv(number, {NAMESPACES * DAYS}) AS ts,
    randCanonical() * 100 AS value,
    1 + rand32() % 10 AS sample_interval,
    toString(rand64()) AS blob
FROM numbers({NAMESPACES * DAYS * ROWS_PER_TENANT_DAY})
"""


def schema(name: str, partition_by: str, description: str) -> Schema:
    ddl = f"""
        CREATE TABLE {{table}} ({COLUMNS})
        ENGINE = MergeTree
        PARTITION BY {partition_by}
        ORDER BY (namespace, index_id, ts)
    """
    return Schema(name, ddl, populate=[POPULATE], description=description)


def billing_window(rng):
    """A tenant's bill for a random week of the retained days."""
    start = FIRST_DAY + dt.timedelta(days=rng.randrange(DAYS - 7))
    return {
        "ns": rng.randrange(NAMESPACES),
        "start": start.strftime("%Y-%m-%d %H:%M:%S"),
        "end": (start + dt.timedelta(days=7)).strftime("%Y-%m-%d %H:%M:%S"),
    }


scenario = Scenario(
    name="namespace_partitioning",
    description="Per-tenant billing aggregate, PARTITION BY day vs PARTITION BY (namespace, day).",
    schemas=[
        schema("day", "toDate(ts)", "one partition per day: few parts"),
        schema("namespace_day", "(namespace, toDate(ts))", f"one partition per tenant-day: {NAMESPACES * DAYS} parts"),
    ],
    queries=[
        Query(
            "tenant_billing",
            """
            SELECT namespace, count() AS events, sum(value * sample_interval) AS billed
            FROM {table}
            WHERE namespace = {ns:UInt16} AND ts >= {start:DateTime} AND ts < {end:DateTime}
            GROUP BY namespace
            """,
            params=billing_window,
        )
    ],
    concurrency=[1, 2, 4, 8],
    warmup_s=1.0,
    duration_s=5.0,
    seed=7,
)
