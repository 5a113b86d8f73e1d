"""The Cloudflare case: a per-tenant billing query under two partition keys.

The table holds 200 tenants (namespaces) over 50 days. Partitioned by day it has
a few dozen parts; partitioned by (namespace, day) every tenant-day is its own
part, 10 000 in all. A tenant's billing query reads the same rows either way,
yet must plan over every part of the table: the parts lock is where that shows.

LOCKPROF_NAMESPACE_DAYS sets the days retained (default 50): 500 gives the big
table, 100 000 parts (see benchmarks/big_table.py). Only a non-default size adds
the settings a table that large needs, so the default dataset keeps its cache key.
"""

import datetime as dt
import os

from lockprof import Query, Scenario, Schema

NAMESPACES = 200
DAYS = int(os.environ.get("LOCKPROF_NAMESPACE_DAYS") or "50")
if DAYS < 8:
    raise ValueError(f"LOCKPROF_NAMESPACE_DAYS must be at least 8 (a billing week plus one day), not {DAYS}")
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

# Values are hashes of the row number, not rand(): every worker builds the same rows, so two
# workers of one engine do the same work per query (random copies differed by ~2% CPU per query).
POPULATE = f"""
INSERT INTO {{table}}
SELECT
    number % {NAMESPACES} AS namespace,
    intHash32(number) % 1000 AS index_id,
    toDateTime('{FIRST_DAY:%Y-%m-%d %H:%M:%S}') + intDiv(number, {NAMESPACES}) % {DAYS} * 86400
        + intDiv(number, {NAMESPACES * DAYS}) AS ts,
    intHash64(number) % 100000 / 1000 AS value,
    1 + intHash32(number + 1) % 10 AS sample_interval,
    toString(sipHash64(number)) AS blob
FROM numbers({NAMESPACES * DAYS * ROWS_PER_TENANT_DAY})
"""
ROWS = NAMESPACES * DAYS * ROWS_PER_TENANT_DAY
PARTS = NAMESPACES * DAYS
if ROWS > 1_000_000:
    # Past one insert block (about 1M rows) every block would write its own part per tenant-day;
    # one block for the whole INSERT keeps exactly one part per partition.
    POPULATE += f"SETTINGS min_insert_block_size_rows = {ROWS}, min_insert_block_size_bytes = 0\n"
# ClickHouse refuses inserts into a table at max_parts_in_total (default 100 000) active parts.
TABLE_SETTINGS = f"\n        SETTINGS max_parts_in_total = {2 * PARTS}" if PARTS >= 50_000 else ""


def schema(name: str, partition_by: str, description: str) -> Schema:
    ddl = f"""
        CREATE TABLE {{table}} ({COLUMNS})
        ENGINE = MergeTree
        PARTITION BY {partition_by}
        ORDER BY (namespace, index_id, ts){TABLE_SETTINGS}
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
