"""Reads through the filesystem cache from one thread: do its lock-wait counters count uncontended waits?

Upstream ClickHouse PR 108806 (in 26.8) made the filesystem cache's lock guards time a wait
only when the lock was contended; before, every acquisition added its (tiny) wait. With one
query thread (``max_threads = 1``) and one query at a time, almost nothing contends, so a
release that times every acquisition should show a little wait per query and one that times
only contention next to none. The table lives on a cache disk over local blob storage (the
cache needs an object store beneath it). ClickHouse places a relative blob path in the
working directory, so the blob objects go to the system's temporary directory instead
(``lockprof-filecache-blob``; each worker's table writes its own objects there), and a
later run whose objects were cleaned away finds its dataset damaged and rebuilds it.
"""

import tempfile
from pathlib import Path

from lockprof import Query, Scenario, Schema

BLOB = Path(tempfile.gettempdir()) / "lockprof-filecache-blob"

DDL = f"""
    CREATE TABLE {{table}} (k UInt64, v String)
    ENGINE = MergeTree
    ORDER BY k
    SETTINGS disk = disk(type = cache, max_size = '1Gi', path = 'lockprof_filecache',
                         disk = disk(type = object_storage, object_storage_type = local_blob_storage,
                                     path = '{BLOB}/', metadata_type = plain_rewritable))
"""

POPULATE = "INSERT INTO {table} SELECT number, toString(number) FROM numbers(2000000)"

scenario = Scenario(
    name="filecache_waits",
    description="One-thread reads of a table on a filesystem-cache disk (upstream PR 108806's counters).",
    schemas=[Schema("cached", DDL, populate=[POPULATE], description="2M rows on a cache disk over local blob storage")],
    queries=[Query("read_through_cache", "SELECT sum(length(v)) FROM {table} WHERE k % 7 = 1")],
    settings={"enable_filesystem_cache": 1, "max_threads": 1},
    concurrency=(1,),
    warmup_s=0.5,
    duration_s=2.0,
)
