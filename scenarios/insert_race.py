"""SELECTs racing INSERTs: writers take the parts lock exclusively to commit new parts.

A background writer inserts a small block every 20 ms while readers run short
point queries. Each committed part takes the MergeTree parts lock exclusively,
so even on engines where readers share that lock, readers queue behind writers.
The race changes the table, so lockprof rebuilds this dataset for every run.
"""

from lockprof import Background, Query, Scenario, Schema

SENSORS = 100
DAYS = 20

COLUMNS = "sensor UInt32, ts DateTime, reading Float64"
POPULATE = f"""
INSERT INTO {{table}}
SELECT number % {SENSORS}, toDateTime('2026-03-01') + intDiv(number, {SENSORS}) % {DAYS} * 86400
       + intDiv(number, {SENSORS * DAYS}), intHash64(number) % 100000 / 1000
FROM numbers({SENSORS * DAYS * 20})
"""


def schema(name: str, partition_by: str) -> Schema:
    ddl = f"CREATE TABLE {{table}} ({COLUMNS}) ENGINE = MergeTree PARTITION BY {partition_by} ORDER BY (sensor, ts)"
    return Schema(name, ddl, populate=[POPULATE], description=f"PARTITION BY {partition_by}")


def one_sensor(rng):
    return {"sensor": rng.randrange(SENSORS)}


scenario = Scenario(
    name="insert_race",
    description="Short point SELECTs while a writer keeps committing new parts.",
    schemas=[schema("month", "toYYYYMM(ts)"), schema("sensor_day", "(sensor, toDate(ts))")],
    queries=[
        Query(
            "latest_reading",
            "SELECT max(ts), argMax(reading, ts) FROM {table} WHERE sensor = {sensor:UInt32}",
            params=one_sensor,
        )
    ],
    background=[
        Background(
            "ingest",
            "INSERT INTO {table} SELECT {sensor:UInt32}, toDateTime('2026-03-01') + number, "
            "intHash64(number) % 100000 / 1000 FROM numbers(100)",
            params=one_sensor,
            pause_s=0.02,
        )
    ],
    concurrency=[1, 2, 4],
    warmup_s=0.5,
    duration_s=4.0,
    seed=11,
)
