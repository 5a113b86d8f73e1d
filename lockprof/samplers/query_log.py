"""Per-query figures from ``system.query_log``, matched to the driver's records by query id.

The driver's id travels in ``log_comment`` (chDB cannot set ``query_id``), so the
reader selects this level's queries by the id prefix after flushing the log. On the
embedded engine the id is set by a ``SET`` before each query (the query text is never
edited); a ``SET`` is logged with the comment it replaces, so ``Set`` rows are skipped.

On a cluster the rows come from every replica (``log_comment`` is a setting, so a
distributed query's secondary queries carry it too): ProfileEvents are kept per
replica, and the per-query row is the initial query's. Only the local log is
flushed (``SYSTEM FLUSH LOGS ON CLUSTER`` needs distributed DDL); the other
replicas' rows are there once their logs flush themselves (7.5 s by default).
"""

from __future__ import annotations

import pandas as pd

from lockprof.engines.base import Connection
from lockprof.samplers.cluster import check_name, on_replicas

PER_QUERY_SQL = """
SELECT {replica} AS replica, is_initial_query, log_comment AS query_id, query_id AS engine_query_id,
       query_duration_ms AS engine_duration_ms,
       read_rows, result_rows, memory_usage, exception_code
FROM system.query_log
WHERE type != 'QueryStart' AND query_kind != 'Set' AND startsWith(log_comment, {prefix:String})
"""

EVENTS_SQL = """
SELECT {replica} AS replica, log_comment AS query_id, k AS event, v AS value
FROM system.query_log
ARRAY JOIN mapKeys(ProfileEvents) AS k, mapValues(ProfileEvents) AS v
WHERE type != 'QueryStart' AND query_kind != 'Set' AND startsWith(log_comment, {prefix:String}) AND v != 0
"""


class QueryLogReader:
    def __init__(self, conn: Connection, cluster: str | None = None) -> None:
        self.conn = conn
        self.cluster = check_name(cluster)

    def read(self, prefix: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(one row per query, one row per query and non-zero ProfileEvent) for ids starting with prefix."""
        self.conn.execute("SYSTEM FLUSH LOGS")
        per_query = self.conn.frame(on_replicas(PER_QUERY_SQL, self.cluster), {"prefix": prefix})
        events = self.conn.frame(on_replicas(EVENTS_SQL, self.cluster), {"prefix": prefix})
        # One row per query: the initial query's, where a distributed query also ran elsewhere.
        if "is_initial_query" in per_query:
            per_query = per_query.sort_values("is_initial_query", kind="stable").drop(columns="is_initial_query")
        per_query = per_query.drop_duplicates("query_id", keep="last")
        if "value" in events:  # an empty answer through clickhouse-connect has no columns
            events["value"] = events["value"].astype("int64")
        return per_query, events
