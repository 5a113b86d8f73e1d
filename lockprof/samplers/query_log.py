"""Per-query figures from ``system.query_log``, matched to the driver's records by query id.

The driver's id travels in ``log_comment`` (chDB cannot set ``query_id``), so the
reader selects this level's queries by the id prefix after flushing the log.
"""

from __future__ import annotations

import pandas as pd

from lockprof.engines.base import Connection

PER_QUERY_SQL = """
SELECT log_comment AS query_id, query_id AS engine_query_id, query_duration_ms AS engine_duration_ms,
       read_rows, result_rows, memory_usage, exception_code
FROM system.query_log
WHERE type != 'QueryStart' AND startsWith(log_comment, {prefix:String})
"""

EVENTS_SQL = """
SELECT log_comment AS query_id, k AS event, v AS value
FROM system.query_log
ARRAY JOIN mapKeys(ProfileEvents) AS k, mapValues(ProfileEvents) AS v
WHERE type != 'QueryStart' AND startsWith(log_comment, {prefix:String}) AND v != 0
"""


class QueryLogReader:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def read(self, prefix: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(one row per query, one row per query and non-zero ProfileEvent) for ids starting with prefix."""
        self.conn.execute("SYSTEM FLUSH LOGS")
        per_query = self.conn.frame(PER_QUERY_SQL, {"prefix": prefix})
        events = self.conn.frame(EVENTS_SQL, {"prefix": prefix})
        per_query = per_query.drop_duplicates("query_id", keep="last")
        events["value"] = events["value"].astype("int64")
        return per_query, events
