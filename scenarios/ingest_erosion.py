"""The fix under steady ingest: the main scenario's 10 000-part table with a writer beside the readers.

Since 26.x a reader takes the MergeTree parts lock shared, reusing a snapshot of the
active parts that the table keeps between queries. Every commit of a new part resets
that snapshot, and the next reader rebuilds it, over all 10 000 parts, under the parts
lock held exclusively: with a writer committing a small block every 20 ms the readers
take the exclusive lock again, and the fix's cap on planned queries per second comes
back at the writer's rate (docs/releases.md, "Under steady ingest").

The table, its rows and the readers' query are namespace_partitioning.py's (its
namespace_day schema, loaded from beside this file); only the writer is added. The
writer changes the table, so lockprof builds this dataset anew for every run.
"""

import importlib.util
from pathlib import Path

from lockprof import Background, Scenario

_spec = importlib.util.spec_from_file_location("lockprof_scenario_namespace_partitioning",
                                               Path(__file__).with_name("namespace_partitioning.py"))
main = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(main)


def one_tenant_day(rng):
    """A block for one tenant on one retained day: exactly one new part in the (namespace, day) table."""
    return {"ns": rng.randrange(main.NAMESPACES), "day": rng.randrange(main.DAYS) * 86400}


INGEST = f"""
INSERT INTO {{table}}
SELECT {{ns:UInt16}}, intHash32(number) % 1000, toDateTime('{main.FIRST_DAY:%Y-%m-%d %H:%M:%S}') + {{day:UInt32}}
       + number, intHash64(number) % 100000 / 1000, 1, toString(sipHash64(number))
FROM numbers(10)
"""

scenario = Scenario(
    name="ingest_erosion",
    description="The main scenario's tenant billing query on 10 000 parts while a writer commits a part every 20 ms.",
    schemas=[s for s in main.scenario.schemas if s.name == "namespace_day"],
    queries=main.scenario.queries,
    background=[Background("ingest", INGEST, params=one_tenant_day, pause_s=0.02)],
    concurrency=[1, 2, 4],
    warmup_s=1.0,
    duration_s=5.0,
    seed=main.scenario.seed,
)
