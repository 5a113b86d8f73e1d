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

Where ``system.query_thread_log`` keeps the level's queries (measured with ``log_query_threads``),
each query also gets two derived events (docs/remainder.md): the time its threads slept waiting
for its own other threads, which no ProfileEvent counts, and its pipeline's wall time. Thread-log
rows are read from the local server only (a cluster's initial queries).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import pandas as pd

from lockprof.dirformat.tables import QUERY_EVENTS
from lockprof.engines.base import Connection
from lockprof.samplers.base import AfterLevel, SamplerContext
from lockprof.samplers.cluster import check_name, on_replicas

# Each query's ProfileEvents; the per-query row (read_rows, ...) joins the driver's records in ``queries``.
TABLE = QUERY_EVENTS

# The engine's query_id is named through the table: the alias query_id would shadow it (ClickHouse prefers aliases).
PER_QUERY_SQL = """
SELECT {replica} AS replica, is_initial_query, log_comment AS query_id, log.query_id AS engine_query_id,
       query_duration_ms AS engine_duration_ms,
       read_rows, result_rows, memory_usage, exception_code
FROM system.query_log AS log
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


OWN_THREADS_WAIT = "LockprofOwnThreadsWaitMicroseconds"
PIPELINE_WALL = "LockprofPipelineWallMicroseconds"
REAL = "RealTimeMicroseconds"
ON_CPU = "OSCPUVirtualTimeMicroseconds"
ON_CPU_PARTS = ("UserTimeMicroseconds", "SystemTimeMicroseconds")  # where OSCPUVirtualTime is missing
WAITS = ("OSCPUWaitMicroseconds", "OSIOWaitMicroseconds")
TIME_EVENTS = (REAL, ON_CPU, *ON_CPU_PARTS, *WAITS)

THREAD_LOG_EXISTS_SQL = "SELECT count() AS n FROM system.tables WHERE database = 'system' AND name = 'query_thread_log'"
# One row per query, thread role and event, for the time counters and the lock waits. Roles by the engine's
# thread names: caller = the query's master thread; executor = the pulling executor's thread (chDB runs every
# SELECT's pipeline there); worker = the pipeline's worker threads; collector = parallel output formatting's
# collector thread (on a server over HTTP); helper = the rest (index analysis, mark loading, formatters).
# query_thread_log has no log_comment column (26.9): the level's queries are found through query_log.
THREADS_SQL = """
SELECT query_id AS engine_query_id,
       multiIf(thread_id = master_thread_id, 'caller', thread_name = 'QueryPullPipeEx', 'executor',
               thread_name = 'QueryPipelineEx', 'worker', thread_name = 'Collector', 'collector', 'helper') AS role,
       k AS event, sum(v) AS value
FROM system.query_thread_log
ARRAY JOIN mapKeys(ProfileEvents) AS k, mapValues(ProfileEvents) AS v
WHERE query_id IN (SELECT query_id FROM system.query_log
                   WHERE type != 'QueryStart' AND query_kind != 'Set' AND startsWith(log_comment, {prefix:String}))
  AND has(splitByChar(',', {events:String}), k) AND v != 0
GROUP BY engine_query_id, role, event
"""


def own_thread_waits(threads: pd.DataFrame, lock_waits: Mapping[str, float]) -> pd.DataFrame:
    """Per query, the derived events :data:`OWN_THREADS_WAIT` and :data:`PIPELINE_WALL` (engine_query_id, event,
    value; µs) from its thread-log sums by role (:data:`THREADS_SQL`'s rows).

    ``rest`` of a role = Real − on CPU − CPU wait − IO wait − lock waits (``lock_waits``: event -> its to_us),
    and W = the executor's Real. The waits are what no counter sees (docs/remainder.md): the caller asleep
    while the pipeline runs (capped at W, so its planning-phase rest stays out), the executor asleep while
    its workers run (without workers it ran the pipeline itself, and its rest is CPU the counters missed),
    the workers idle between tasks, and an output collector waiting for formatted blocks. On a server over
    HTTP the handler thread runs the pipeline itself: with no executor thread the caller takes the
    executor's part, and there is no W. A query without thread-log rows gets no events.
    """
    columns = ["engine_query_id", "event", "value"]
    if threads.empty:
        return pd.DataFrame(columns=columns)
    wide = threads.pivot_table(index=["engine_query_id", "role"], columns="event", values="value", aggfunc="sum",
                               fill_value=0).astype(float)
    # On CPU as the accounting counts it: OSCPUVirtualTime where the query has it, else user + system.
    has_virtual = _event(wide, ON_CPU).groupby(level="engine_query_id").transform("sum") > 0
    on_cpu = _event(wide, ON_CPU).where(has_virtual, sum(_event(wide, n) for n in ON_CPU_PARTS))
    locks = sum(_event(wide, event) * to_us for event, to_us in lock_waits.items())
    rest = (_event(wide, REAL) - on_cpu - sum(_event(wide, n) for n in WAITS) - locks).unstack("role")
    real = _event(wide, REAL).unstack("role")
    wall = _role(real, "executor")
    has_executor, has_workers = wall.notna(), _role(real, "worker").notna()
    caller = _asleep(rest, "caller")
    caller = caller.clip(upper=wall.fillna(0.0)).where(has_executor, caller.where(has_workers, 0.0))
    executor = _asleep(rest, "executor").where(has_workers, 0.0)
    own = caller + executor + _asleep(rest, "worker") + _asleep(rest, "collector")
    out = pd.concat([own.rename(OWN_THREADS_WAIT), wall.rename(PIPELINE_WALL)], axis=1).rename_axis(columns="event")
    out = out.stack().rename("value").reset_index().dropna(subset=["value"])  # no W without an executor
    return out.assign(value=out["value"].round().astype("int64"))[columns].reset_index(drop=True)


def comma_list(names: list[str]) -> str:
    """Event names as one String parameter, split in the SQL: chDB and clickhouse-connect disagree on how an
    Array(String) parameter is written. Event names are words; anything else is refused."""
    bad = [n for n in names if not re.fullmatch(r"\w+", n)]
    if bad:
        raise ValueError(f"not an event name: {bad[0]!r}")
    return ",".join(names)


def _event(wide: pd.DataFrame, name: str) -> pd.Series:
    """One event's column of the (query, role) x event sums; zero where no row had it."""
    return wide[name] if name in wide else pd.Series(0.0, index=wide.index)


def _role(by_role: pd.DataFrame, name: str) -> pd.Series:
    """One role's column of a query x role frame; NaN where the query has no thread of that role."""
    return by_role[name] if name in by_role else pd.Series(float("nan"), index=by_role.index)


def _asleep(rest: pd.DataFrame, name: str) -> pd.Series:
    """A role's rest where it is positive (a negative rest is counter lag, not negative waiting); 0 if absent."""
    return _role(rest, name).clip(lower=0.0).fillna(0.0)


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
    """``lock_waits`` (lock wait event -> its to_us, from the run's lock catalog): also derive each query's
    own-thread waits from ``system.query_thread_log``; None: read query_log only."""

    def __init__(self, conn: Connection, cluster: str | None = None,
                 lock_waits: Mapping[str, float] | None = None) -> None:
        self.conn = conn
        self.cluster = check_name(cluster)
        self.lock_waits = None if lock_waits is None else dict(lock_waits)

    def thread_waits(self, prefix: str) -> pd.DataFrame:
        """:func:`own_thread_waits` of the queries with ids (or tags) starting with prefix, by engine query id;
        none where the engine keeps no thread log (a server's config may have none) or logs were flushed before."""
        empty = pd.DataFrame(columns=["engine_query_id", "event", "value"])
        if self.lock_waits is None or int(self.conn.frame(THREAD_LOG_EXISTS_SQL)["n"].iloc[0]) == 0:
            return empty
        events = [*TIME_EVENTS, *self.lock_waits]
        threads = self.conn.frame(THREADS_SQL, {"prefix": prefix, "events": comma_list(events)})
        if threads.empty:  # an empty answer through clickhouse-connect has no columns
            return empty
        return own_thread_waits(threads.astype({"value": "float64"}), self.lock_waits)

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
        derived = self.thread_waits(prefix)
        if not derived.empty and not per_query.empty:  # an empty answer through clickhouse-connect has no columns
            # each derived row names the query's replica (the local one: the thread log is read there)
            keys = per_query[["engine_query_id", "query_id", "replica"]]
            derived = derived.merge(keys, on="engine_query_id")
            events = pd.concat([events, derived[["replica", "query_id", "event", "value"]]], ignore_index=True)
        return per_query, events

    def read_by_order(self, prefix: str, records: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
        """As :meth:`read`, for the tagged statements of ``records`` (see :func:`match_by_order`); one engine."""
        self.conn.execute("SYSTEM FLUSH LOGS")
        per_query = self.conn.frame(BY_ORDER_SQL, {"prefix": prefix})
        events = self.conn.frame(BY_ORDER_EVENTS_SQL, {"prefix": prefix})
        events = events.reindex(columns=["engine_query_id", "event", "value"]).astype({"value": "int64"})
        derived = self.thread_waits(prefix)
        if not derived.empty:
            events = pd.concat([events, derived], ignore_index=True)
        return match_by_order(records, per_query, events)


class QueryLogAfterLevel:
    """The query log as an after-level reader: each query's row joins the driver's records, its ProfileEvents go
    to ``query_events``. Its queries log their threads too (``log_query_threads``), for the derived waits."""

    settings = {"log_query_threads": 1}

    def __init__(self, conn: Connection, cluster: str | None, lock_waits: Mapping[str, float], by_order: bool) -> None:
        self.reader = QueryLogReader(conn, cluster, lock_waits=lock_waits)
        self.by_order = by_order  # the engine cannot take the driver's ids: match rows by order (read_by_order)

    @classmethod
    def open(cls, ctx: SamplerContext) -> QueryLogAfterLevel | None:
        caps = ctx.capabilities
        if caps is None or ctx.admin is None or not caps.query_log:
            return None
        return cls(ctx.admin, ctx.cluster, ctx.lock_waits, by_order=not caps.query_id)

    def read(self, prefix: str, records: pd.DataFrame) -> AfterLevel:
        problems: list[str] = []
        if self.by_order:
            per_query, events, problems = self.reader.read_by_order(prefix, records)
        else:
            per_query, events = self.reader.read(prefix)
        return AfterLevel({TABLE: events}, per_query=per_query, problems=problems)
