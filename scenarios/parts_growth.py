"""Latency against the table's parts count, with the data and the query held fixed.

The same 400 tenants × 40 days of rows are stored under three partition keys that
split them into 1 000, 4 000 and 16 000 parts. A tenant's weekly query reads the same
rows in each, so any growth of its latency with the parts count is the cost of planning
over all parts (taking the parts lock, copying or filtering the parts list), the curve
that exposed the Cloudflare case. Building all three takes about half a minute on 2 cores
(cached afterwards); the default sweep measures for about 40 s.
"""

import datetime as dt

from lockprof import Query, Scenario, Schema

TENANTS = 400
DAYS = 40
ROWS_PER_TENANT_DAY = 20
FIRST_DAY = dt.datetime(2026, 1, 1)

POPULATE = f"""
INSERT INTO {{table}}
SELECT
    number % {TENANTS} AS namespace,
    toDateTime('{FIRST_DAY:%Y-%m-%d %H:%M:%S}') + intDiv(number, {TENANTS}) % {DAYS} * 86400
        + intDiv(number, {TENANTS * DAYS}) AS ts,
    intHash64(number) % 100000 / 1000 AS value
FROM numbers({TENANTS * DAYS * ROWS_PER_TENANT_DAY})
"""


def schema(groups: int) -> Schema:
    """Tenants hashed into ``groups`` buckets, one partition per bucket and day."""
    key = "(namespace, toDate(ts))" if groups == TENANTS else f"(namespace % {groups}, toDate(ts))"
    ddl = f"""
        CREATE TABLE {{table}} (namespace UInt16, ts DateTime, value Float64)
        ENGINE = MergeTree
        PARTITION BY {key}
        ORDER BY (namespace, ts)
    """
    return Schema(f"parts_{groups * DAYS:05d}", ddl, populate=[POPULATE],
                  description=f"PARTITION BY {key}: {groups * DAYS} parts")


def tenant_week(rng):
    start = FIRST_DAY + dt.timedelta(days=rng.randrange(DAYS - 7))
    return {
        "ns": rng.randrange(TENANTS),
        "start": start.strftime("%Y-%m-%d %H:%M:%S"),
        "end": (start + dt.timedelta(days=7)).strftime("%Y-%m-%d %H:%M:%S"),
    }


scenario = Scenario(
    name="parts_growth",
    description="One tenant's weekly sum over the same rows split into 1k, 4k and 16k parts.",
    schemas=[schema(25), schema(100), schema(TENANTS)],
    queries=[
        Query(
            "tenant_week",
            """
            SELECT count() AS events, sum(value) AS total
            FROM {table}
            WHERE namespace = {ns:UInt16} AND ts >= {start:DateTime} AND ts < {end:DateTime}
            """,
            params=tenant_week,
        )
    ],
    concurrency=[1, 2, 4],
    warmup_s=0.5,
    duration_s=3.0,
    seed=11,
)
