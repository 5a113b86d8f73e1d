"""Per-query figures from ``system.query_log``, matched to the driver's records.

A server takes the driver's id as its ``query_id`` and as ``log_comment``; the reader
selects this level's queries by the id prefix after flushing the log.

chDB cannot set ``query_id``, and a ``log_comment`` per query would cost a ``SET`` (a
second call into the engine) before every query. So on the embedded engine each of the
level's connections carries one tag for all its statements, set once; the driver numbers
each connection's statements, and the query log keeps them in the same order, one row
each (a ``QueryFinish`` or an exception; a ``SET`` is logged with the comment it replaces,
so ``Set`` rows are skipped). :func:`match_by_order` pairs them and refuses a connection
whose rows do not line up with its statements: its queries get no figures rather than
another query's.

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


ERROR_CODE = r"Code: (\d+)\."  # how a ClickHouse error names its code
SLACK_US = 1000.0  # timer granularity between the engine's clock and the driver's

BY_ORDER_SQL = """
SELECT log_comment AS log_tag,
       row_number() OVER (PARTITION BY log_comment
                          ORDER BY query_start_time_microseconds, event_time_microseconds) - 1 AS log_seq,
       dateDiff('microsecond', query_start_time_microseconds, event_time_microseconds) AS engine_us,
       query_id AS engine_query_id, query_duration_ms AS engine_duration_ms,
       read_rows, result_rows, memory_usage, exception_code
FROM system.query_log
WHERE type != 'QueryStart' AND query_kind != 'Set' AND startsWith(log_comment, {prefix:String})
"""

BY_ORDER_EVENTS_SQL = """
SELECT query_id AS engine_query_id, k AS event, v AS value
FROM system.query_log
ARRAY JOIN mapKeys(ProfileEvents) AS k, mapValues(ProfileEvents) AS v
WHERE type != 'QueryStart' AND query_kind != 'Set' AND startsWith(log_comment, {prefix:String}) AND v != 0
"""


def match_by_order(
    records: pd.DataFrame, per_query: pd.DataFrame, events: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Give the by-order rows of :data:`BY_ORDER_SQL` the driver's query ids.

    Returns (per-query rows, event rows, one line per connection left unmatched). Per
    connection, records and rows are walked in order: a row belongs to the next record with
    its exception code (0 for a success). A statement that failed may have no row (chDB logs
    no syntax error). The log and the driver disagree, and that connection's queries get no
    figures, when a success has no row, rows are left over, or a row's query ran longer in
    the engine than the driver's call around it (``SLACK_US``): a row shifted onto another
    query shows that way unless the two took the same time.
    """
    sent = records.dropna(subset=["log_tag", "log_seq"]).sort_values(["log_tag", "log_seq"])
    codes = sent["error"].str.extract(ERROR_CODE, expand=False).astype(float).fillna(-1).astype("int64")
    codes[sent["error"].isna()] = 0
    call_us = (sent["latency_ms"] - sent["queue_delay_ms"]) * 1000.0
    logged = per_query.sort_values(["log_tag", "log_seq"])
    rows_by_tag = dict(tuple(logged.groupby("log_tag", sort=False)))
    pairs: list[tuple[str, int]] = []  # (query id, index of its row)
    problems = []
    for tag, mine in sent.assign(code=codes, call_us=call_us).groupby("log_tag", sort=False):
        rows = rows_by_tag.pop(tag, logged.iloc[:0])
        aligned = _align(mine["code"].tolist(), rows["exception_code"].tolist())
        if aligned is not None:
            took = rows["engine_us"].to_numpy()[[k for _, k in aligned]]
            allowed = mine["call_us"].to_numpy()[[i for i, _ in aligned]] * 1.01 + SLACK_US
            aligned = aligned if (took <= allowed).all() else None
        if aligned is None:
            problems.append(f"query_log holds {len(rows)} statements of connection {tag} that do not line up with "
                            f"the {len(mine)} sent on it: its queries have no per-query figures")  # fmt: skip
            continue
        pairs.extend((mine["query_id"].iloc[i], rows.index[k]) for i, k in aligned)
    problems.extend(f"query_log holds {len(rows)} statements of connection {tag}, which sent none"
                    for tag, rows in rows_by_tag.items())  # fmt: skip
    ids = pd.Series([q for q, _ in pairs], index=[k for _, k in pairs], name="query_id", dtype=object)
    matched = logged.loc[ids.index].assign(query_id=ids).drop(columns=["log_tag", "log_seq", "engine_us"])
    matched = matched.reset_index(drop=True)
    out_events = events.merge(matched[["engine_query_id", "query_id"]], on="engine_query_id")
    return matched, out_events[["query_id", "event", "value"]], problems


def _align(codes: list[int], logged_codes: list[int]) -> list[tuple[int, int]] | None:
    """(record position, row position) pairs, or None when the rows cannot be the statements' in order."""
    out, k = [], 0
    for i, code in enumerate(codes):
        if k < len(logged_codes) and logged_codes[k] == code:
            out.append((i, k))
            k += 1
        elif code == 0:
            return None  # a success always has its row
    return out if k == len(logged_codes) else None


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

    def read_by_order(self, prefix: str, records: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
        """As :meth:`read`, for the tagged statements of ``records`` (see :func:`match_by_order`); one engine."""
        self.conn.execute("SYSTEM FLUSH LOGS")
        per_query = self.conn.frame(BY_ORDER_SQL, {"prefix": prefix})
        events = self.conn.frame(BY_ORDER_EVENTS_SQL, {"prefix": prefix})
        events = events.reindex(columns=["engine_query_id", "event", "value"]).astype({"value": "int64"})
        return match_by_order(records, per_query, events)
