"""A small two-schema scenario for the tests: the namespace case at a few hundred parts."""

from lockprof import Query, Scenario, Schema

NAMESPACES = 20
DAYS = 15

POPULATE = f"""
INSERT INTO {{table}}
SELECT number % {NAMESPACES}, toDateTime('2026-01-01') + intDiv(number, {NAMESPACES}) % {DAYS} * 86400, number
FROM numbers({NAMESPACES * DAYS * 10})
"""


def schema(name: str, partition_by: str) -> Schema:
    return Schema(
        name,
        f"CREATE TABLE {{table}} (namespace UInt16, ts DateTime, value Float64) "
        f"ENGINE = MergeTree PARTITION BY {partition_by} ORDER BY (namespace, ts)",
        populate=[POPULATE],
    )


scenario = Scenario(
    name="tiny",
    schemas=[schema("day", "toDate(ts)"), schema("namespace_day", "(namespace, toDate(ts))")],
    queries=[
        Query(
            "tenant_sum",
            "SELECT sum(value) FROM {table} WHERE namespace = {ns:UInt16}",
            params=lambda rng: {"ns": rng.randrange(NAMESPACES)},
        )
    ],
    concurrency=[1, 2],
    warmup_s=0.2,
    duration_s=1.0,
    seed=3,
)
