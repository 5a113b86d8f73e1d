"""Stack samples of the run's own queries from a server's ``system.trace_log``.

The server engine turns the query profilers on per query (see
:func:`lockprof.engines.server.stack_settings`: real-time and CPU profilers at a
chosen period, and ``trace_profile_events`` so every lock-counter increment
leaves a ``ProfileEvent`` row weighted by its increment). After a level this
reader symbolizes the samples of that level's query ids on the server
(``addressToSymbol`` + ``demangle`` need ``allow_introspection_functions``) and
returns them folded, one row per distinct stack. chDB's trace_log stays empty,
so on the embedded engine the frame is simply empty. On a cluster the whole query,
symbolization included, runs on every replica (:mod:`lockprof.samplers.cluster`),
and each stack keeps the replica it was sampled on.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lockprof.dirformat.tables import STACKS
from lockprof.engines.base import Connection
from lockprof.samplers.base import AfterLevel, SamplerContext
from lockprof.samplers.cluster import check_name, on_replicas
from lockprof.stacks import STACK_COLUMNS, clean_frame

# trace is leaf first; folded stacks are root first. Grouping on the server keeps the transfer small.
STACKS_SQL = """
SELECT {replica} AS replica, query_id, toString(trace_type) AS trace_type, {event} AS event,
       arrayMap(a -> demangle(addressToSymbol(a)), arrayReverse(trace)) AS frames,
       arrayReverse(trace) AS addresses, count() AS samples, sum({weight}) AS weight
FROM system.trace_log
WHERE {where}
GROUP BY replica, query_id, trace_type, event, trace
"""
TABLE = STACKS


def stacks_sql(by_window: bool = False, has_event: bool = True, cluster: str | None = None) -> str:
    """The query for one id prefix; the prefix is bound as ``{prefix:String}``."""
    where = "startsWith(query_id, {prefix:String})"
    if by_window:
        # Observe mode has no ids of its own: take every query that ran in the window.
        where = "event_time >= toDateTime({start:Float64}) AND event_time <= toDateTime({end:Float64})"
    event = "event" if has_event else "''"
    weight = "if(trace_type = 'ProfileEvent', increment, 1)" if has_event else "1"
    select = STACKS_SQL.replace("{where}", where).replace("{event}", event).replace("{weight}", weight)
    return on_replicas(select, cluster, settings="allow_introspection_functions = 1")


def fold(raw: pd.DataFrame) -> pd.DataFrame:
    """Server rows (frames and addresses as arrays) -> tidy rows with one folded ``stack`` string."""
    if raw.empty:
        return pd.DataFrame(columns=[*STACK_COLUMNS, "replica"])
    stacks = [
        ";".join(clean_frame(sym, int(addr)) for sym, addr in zip(frames, addresses))
        for frames, addresses in zip(raw["frames"], raw["addresses"])
    ]
    out = pd.DataFrame({
        "query_id": raw["query_id"].astype(str),
        "trace_type": raw["trace_type"].astype(str),
        "event": raw["event"].astype(str),
        "stack": stacks,
        "samples": raw["samples"].astype("int64"),
        "weight": raw["weight"].astype("float64"),
        "replica": raw["replica"].astype(str) if "replica" in raw else "",
    })
    keys = ["query_id", "trace_type", "event", "stack", "replica"]
    return out.groupby(keys, as_index=False)[["samples", "weight"]].sum()


class TraceLogReader:
    """Reads the folded stacks of one level (by query-id prefix) or one time window (observe mode)."""

    def __init__(self, conn: Connection, flush: bool = True, cluster: str | None = None) -> None:
        self.conn = conn
        self.flush = flush  # read-only connections cannot flush; the logs flush themselves every few seconds
        self.cluster = check_name(cluster)

    def read(self, prefix: str) -> pd.DataFrame:
        if self.flush:
            self.conn.execute("SYSTEM FLUSH LOGS")
        return fold(self.conn.frame(stacks_sql(cluster=self.cluster), {"prefix": prefix}))

    def read_window(self, start_unix_s: float, end_unix_s: float) -> pd.DataFrame:
        sql = stacks_sql(by_window=True, cluster=self.cluster)
        return fold(self.conn.frame(sql, {"start": start_unix_s, "end": end_unix_s}))


class TraceLogAfterLevel:
    """trace_log as an after-level reader: the level's folded stacks, and their folded and speedscope files."""

    settings: dict = {}

    def __init__(self, conn: Connection, cluster: str | None) -> None:
        self.reader = TraceLogReader(conn, cluster=cluster)

    @classmethod
    def open(cls, ctx: SamplerContext) -> TraceLogAfterLevel | None:
        """Only where the engine's profilers sample the run's queries (chDB's trace_log stays empty)."""
        caps = ctx.capabilities
        if caps is None or ctx.admin is None or not caps.stack_period_ms:
            return None
        return cls(ctx.admin, ctx.cluster)

    def read(self, prefix: str, records: pd.DataFrame) -> AfterLevel:
        from lockprof.stacks import write_exports

        stacks = self.reader.read(prefix)
        return AfterLevel({TABLE: stacks},
                          exports=lambda run_dir, part: write_exports(stacks, Path(run_dir) / "stacks", part))
