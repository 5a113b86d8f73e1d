"""A tiny namespace-partitioning workload for the A/B tests: a few hundred parts, built in seconds.

20 namespaces over 15 days, partitioned by (namespace, day): 300 parts. Small
enough for CI, yet every query still plans over all of them under the parts lock.
"""

import datetime as dt

from lockprof import Query, Scenario, Schema

NAMESPACES = 20
DAYS = 15
ROWS_PER_TENANT_DAY = 20
FIRST_DAY = dt.datetime(2026, 1, 1)

POPULATE = f"""
INSERT INTO {{table}}
SELECT
    number % {NAMESPACES} AS namespace,
    toDateTime('{FIRST_DAY:%Y-%m-%d %H:%M:%S}') + intDiv(number, {NAMESPACES}) % {DAYS} * 86400
        + intDiv(number, {NAMESPACES * DAYS}) AS ts,
    intHash64(number) % 100000 / 1000 AS value
FROM numbers({NAMESPACES * DAYS * ROWS_PER_TENANT_DAY})
"""


def tenant_window(rng):
    start = FIRST_DAY + dt.timedelta(days=rng.randrange(DAYS - 3))
    return {
        "ns": rng.randrange(NAMESPACES),
        "start": start.strftime("%Y-%m-%d %H:%M:%S"),
        "end": (start + dt.timedelta(days=3)).strftime("%Y-%m-%d %H:%M:%S"),
    }


scenario = Scenario(
    name="ab_tiny",
    description="Tenant aggregate over 300 parts, for A/B tests.",
    schemas=[
        Schema(
            "namespace_day",
            """
            CREATE TABLE {table} (namespace UInt16, ts DateTime, value Float64)
            ENGINE = MergeTree
            PARTITION BY (namespace, toDate(ts))
            ORDER BY (namespace, ts)
            """,
            populate=[POPULATE],
            description=f"one partition per tenant-day: {NAMESPACES * DAYS} parts",
        )
    ],
    queries=[
        Query(
            "tenant_sum",
            """
            SELECT count() AS n, sum(value) AS total
            FROM {table}
            WHERE namespace = {ns:UInt16} AND ts >= {start:DateTime} AND ts < {end:DateTime}
            """,
            params=tenant_window,
        )
    ],
    concurrency=[1, 2],
    warmup_s=0.3,
    duration_s=1.0,
    seed=11,
)
