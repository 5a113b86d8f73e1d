"""A rare, long exclusive hold of the parts lock: a latency tail with a known cause.

Readers run a cheap tenant-day aggregate on a table of 1 000 parts (20 tenants x 50
days, PARTITION BY (namespace, day)) that is wide: 200 padding columns besides the
3 it reads. A background thread repeats ``ALTER TABLE ... MODIFY COLUMN value
DEFAULT 0``, a metadata-only ALTER that changes no data, with a 0.2 s pause between
runs. Each such ALTER holds the table's MergeTree parts lock *exclusively*, once,
for a time that grows with parts x columns (about 0.2 us per part-column on 26.9),
and every reader that needs the lock meanwhile waits in shared mode. The first
reader after each ALTER rebuilds the shared parts snapshot and so holds the lock
exclusively too, briefly (about 0.5 ms).

Known answer, measured on chDB 26.9 (2 cores, other work running beside):
- each ALTER holds the parts lock exclusively once (PartsLocks = 1), for 45-65 ms;
  100-300 ms (once 0.7 s) when other processes take the cores, as the holder is
  descheduled while holding;
- a reader query takes 4-10 ms at the median (20-30 ms on a saturated machine) and
  the median ones never wait on the parts lock;
- in a closed loop each hold stalls about one query per reader thread for about the
  whole hold, so 2-4% of the queries are stalled (more on a loaded machine): the
  queries at p99 and above all overlapped an ALTER (one in 8 did not, in one level
  of 14) and waited on the shared parts lock for about its hold
  (SharedPartsLockWaitMicroseconds); the middle half waited on it for nothing, and
  5-25% of them ran beside an ALTER (up to 45% on a saturated machine, where the
  ALTER's time outside its hold stretches).

The pause sets that share: a stalled query per reader per ALTER makes the stalled
share about (mean query latency) / (pause + ALTER time), so a pause of seconds would
leave the stalled queries under 0.5% and p99 to noise.
"""

from lockprof import Background, Query, Scenario, Schema

NAMESPACES = 20
DAYS = 50
ROWS_PER_TENANT_DAY = 5
PADDING_COLUMNS = 200
PAUSE_S = 0.2

PADDING = "".join(f", pad{i:03d} UInt8" for i in range(PADDING_COLUMNS))
DDL = f"""
CREATE TABLE {{table}} (namespace UInt16, ts DateTime, value Float64{PADDING})
ENGINE = MergeTree
PARTITION BY (namespace, toDate(ts))
ORDER BY (namespace, ts)
"""
# Only the columns the query reads are filled; the padding columns hold their defaults.
POPULATE = f"""
INSERT INTO {{table}} (namespace, ts, value)
SELECT
    number % {NAMESPACES},
    toDateTime('2026-01-01 00:00:00') + intDiv(number, {NAMESPACES}) % {DAYS} * 86400
        + intDiv(number, {NAMESPACES * DAYS}),
    intHash64(number) % 100000 / 1000
FROM numbers({NAMESPACES * DAYS * ROWS_PER_TENANT_DAY})
"""


def tenant_day(rng):
    return {"ns": rng.randrange(NAMESPACES), "day": rng.randrange(DAYS)}


scenario = Scenario(
    name="rare_exclusive",
    description="Cheap reads while a metadata-only ALTER now and then holds the parts lock exclusively.",
    schemas=[
        Schema(
            "wide_namespace_day",
            DDL,
            populate=[POPULATE],
            description=f"{NAMESPACES * DAYS} parts x {3 + PADDING_COLUMNS} columns",
        )
    ],
    queries=[
        Query(
            "tenant_day",
            "SELECT count(), sum(value) FROM {table} WHERE namespace = {ns:UInt16} "
            "AND ts >= toDateTime('2026-01-01 00:00:00') + {day:UInt32} * 86400 "
            "AND ts < toDateTime('2026-01-01 00:00:00') + ({day:UInt32} + 1) * 86400",
            params=tenant_day,
        )
    ],
    background=[
        Background("alter_default", "ALTER TABLE {table} MODIFY COLUMN value DEFAULT 0", pause_s=PAUSE_S)
    ],
    concurrency=[1, 2],
    warmup_s=0.5,
    duration_s=6.0,
    seed=5,
)
