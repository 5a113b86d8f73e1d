"""Every table of a run directory, declared once: its columns and their types, whether its rows name a replica,
whether ``load_run`` leaves it in its files. Writers, the loader and the documentation derive from this.

A table's rows are written as Parquet parts (``RUN/<table>/<part>.parquet``); a column's *kind* is what its
values are, whatever width the writer chose (``int`` covers int32 and uint64 alike). A column marked
``optional`` is written only where its source exists (an engine with a query log, a server cluster, a newer
lockprof): readers check for it. A sampler that brings a table of its own declares it with
:func:`register_table`.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

# What each kind accepts, as numpy dtype kinds (an all-null column fits every kind: Parquet stores it as null).
KINDS: dict[str, str] = {"str": "OSU", "int": "iu", "float": "f", "number": "iuf", "bool": "b"}


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # a key of KINDS
    doc: str = ""
    optional: bool = False  # not every writer has it (see the module's docstring)
    by: str = ""  # which writer fills it, where writers build their own lists from the declaration

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"column {self.name!r}: unknown kind {self.kind!r}; known: {', '.join(KINDS)}")


@dataclass(frozen=True)
class Table:
    name: str
    doc: str
    columns: tuple[Column, ...]
    replica: bool = False  # rows name their replica ('' on one server or the embedded engine)
    lazy: bool = False  # load_run leaves it in its Parquet files until it is read
    # Columns read as categoricals: a few names repeated millions of times (labels stay plain strings,
    # comparisons relabel them).
    categorical: tuple[str, ...] = field(default=())

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"table {self.name!r} declares no column {name!r}")

    def written_by(self, writer: str) -> list[str]:
        """The names of the columns ``writer`` fills, in declared order."""
        return [c.name for c in self.columns if c.by == writer]

    def empty(self) -> pd.DataFrame:
        """The table of a run that has no part of it: every declared column, and the loader's ``run_id``."""
        return pd.DataFrame(columns=[*self.names, RUN_ID])

    def problems(self, frame: pd.DataFrame) -> list[str]:
        """How a frame a writer is about to store departs from the declaration (nothing: it fits)."""
        out = [f"{self.name}.{c.name}: missing" for c in self.columns if not c.optional and c.name not in frame]
        declared = {c.name: c for c in self.columns}
        for name in frame.columns:
            column = declared.get(name)
            if column is None:
                out.append(f"{self.name}.{name}: not declared")
            elif not _fits(frame[name], column.kind):
                out.append(f"{self.name}.{name}: {frame[name].dtype} values, declared {column.kind}")
        return out


RUN_ID = "run_id"  # added by the loader to every table: which run a row came from


def _fits(values: pd.Series, kind: str) -> bool:
    present = values.dropna()
    if present.empty:
        return True
    dtype = values.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        dtype = dtype.categories.dtype
    if dtype.kind != "O":
        return dtype.kind in KINDS[kind]
    if kind == "bool":
        return all(isinstance(v, (bool, np.bool_)) for v in present)
    python = {"str": str, "int": numbers.Integral, "float": numbers.Real, "number": numbers.Real}[kind]
    return all(isinstance(v, python) and not isinstance(v, (bool, np.bool_)) for v in present)


def _keys(by: str = "") -> tuple[Column, ...]:
    """The level a row belongs to."""
    return (Column("engine", "str", "engine label", by=by), Column("schema", "str", by=by),
            Column("concurrency", "int", by=by), Column("repetition", "int", by=by))


REPLICA = Column("replica", "str", "which replica of a cluster ('' on one server or embedded; the loader fills it "
                 "in for runs written before clusters were read)")

_DECLARED: dict[str, Table] = {}


def register_table(table: Table) -> Table:
    """Add a table to the format (a sampler with a table of its own calls this when it is defined)."""
    known = _DECLARED.get(table.name)
    if known is not None and known != table:
        raise ValueError(f"table {table.name!r} is declared twice, differently")
    names = table.names
    if len(set(names)) != len(names):
        raise ValueError(f"table {table.name!r} declares a column twice")
    if table.replica and "replica" not in names:
        raise ValueError(f"table {table.name!r} names replicas but declares no replica column")
    _DECLARED[table.name] = table
    return table


def tables() -> tuple[Table, ...]:
    """Every declared table, in declaration order."""
    return tuple(_DECLARED.values())


def table(name: str) -> Table:
    try:
        return _DECLARED[name]
    except KeyError:
        raise ValueError(f"unknown table {name!r}") from None


def names() -> tuple[str, ...]:
    return tuple(_DECLARED)


def check(frames: Iterable[tuple[str, pd.DataFrame]]) -> list[str]:
    """:meth:`Table.problems` of several (table, frame) pairs."""
    return [p for name, frame in frames for p in table(name).problems(frame)]


def markdown() -> str:
    """The tables as a Markdown reference (``python -m lockprof.dirformat`` prints it)."""
    out = ["# The tables of a run directory", "",
           "Generated from `lockprof/dirformat/tables.py` (`python -m lockprof.dirformat > docs/run-tables.md`):",
           "every table is `RUN/<table>/*.parquet`, one part per engine and level. *optional*: written only where",
           "its source exists (an engine with a query log, a cluster, a newer lockprof); readers check for it.", ""]
    for t in tables():
        traits = [w for w, on in (("rows name their replica", t.replica),
                                  ("left in its files until read", t.lazy)) if on]
        out += [f"## {t.name}", "", t.doc[0].upper() + t.doc[1:] + "." + (f" ({'; '.join(traits)}.)" if traits else ""),
                "", "| column | kind | |", "|---|---|---|"]
        out += [f"| {c.name} | {c.kind}{' (optional)' if c.optional else ''} | {c.doc} |" for c in t.columns]
        out.append("")
    return "\n".join(out)


# --- the tables lockprof writes ---------------------------------------------------------------------------------

QUERIES = register_table(Table("queries", "one row per statement the driver ran", (
    *_keys("driver")[1:],
    Column("worker", "int", "the driver thread", by="driver"),
    Column("role", "str", "query or background", by="driver"),
    Column("query_name", "str", by="driver"),
    Column("query_id", "str", by="driver"),
    Column("phase", "str", "warmup, measure, or after (started once the window had closed)", by="driver"),
    Column("intended_start_s", "float", "when the query was due (open loop: its schedule), run clock s", by="driver"),
    Column("start_s", "float", "when it was sent, run clock s", by="driver"),
    Column("latency_ms", "float", "from intended start to its end", by="driver"),
    Column("queue_delay_ms", "float", "open loop: how late the query started", optional=True, by="driver"),
    Column("error", "str", "the error, if it failed", by="driver"),
    Column("cancelled", "bool", "cancelled by its time limit, the watchdog or a stop signal", optional=True,
           by="driver"),
    Column("censored", "bool", "still running when the window closed", optional=True, by="driver"),
    Column("engine", "str", "engine label"),
    Column("replica", "str", REPLICA.doc, optional=True),
    Column("engine_query_id", "str", "from the engine's query log", optional=True),
    Column("engine_duration_ms", "number", optional=True),
    Column("read_rows", "int", optional=True),
    Column("result_rows", "int", optional=True),
    Column("memory_usage", "int", optional=True),
    Column("exception_code", "int", optional=True),
)))

LEVELS = register_table(Table("levels", "one row per measured level (a window of one engine)", (
    *_keys(),
    Column("seq", "int", "order of the level in the run (its parts are named by it)"),
    Column("position", "int", "order among its repetition's windows (0 = ran first)", optional=True),
    Column("measure_start_s", "float", "the measurement window, run clock s"),
    Column("measure_end_s", "float"),
    Column("target_qps", "float", "open loop: the rate asked for", optional=True),
    Column("scheduled", "number", "open loop: the queries the rate asked for", optional=True),
    Column("queries", "int", "ended in the window"),
    Column("errors", "int", "of those"),
    Column("censored", "int", optional=True),
    Column("cancelled", "int", "older runs: what censored counts now", optional=True),
    Column("background", "int", optional=True),
    Column("background_errors", "int", optional=True),
    Column("active_parts_before", "number", "the dataset's active parts (NaN where not read)"),
    Column("active_parts_after", "number"),
    Column("interrupted", "bool", "cut short by a stop signal"),
    Column("sampler_errors", "str", optional=True),
    Column("host_cpus", "int", "how busy the machine was", optional=True, by="host"),
    Column("load_avg_start", "float", "1-minute load average", optional=True, by="host"),
    Column("load_avg_end", "float", optional=True, by="host"),
    Column("run_cpu_share", "float", "share of all cores the run's processes used", optional=True, by="host"),
    Column("host_other_cpu_share", "float", "share of all cores other processes used", optional=True, by="host"),
    Column("error_share", "float", "failed share of its queries", optional=True),
    Column("failed", "bool", "the error share passed the limit", optional=True),
    Column("first_error", "str", optional=True),
    Column("first_background_error", "str", optional=True),
)))

EVENTS = register_table(Table("events", "system.events deltas per sampling interval", (
    Column("t_s", "float", by="sampler"), Column("interval_s", "float", by="sampler"),
    Column("event", "str", by="sampler"), Column("delta", "int", by="sampler"),
    Column("replica", "str", REPLICA.doc, optional=True, by="sampler"), *_keys(),
), replica=True, categorical=("event",)))

METRICS = register_table(Table("metrics", "system.metrics gauges per sample", (
    Column("t_s", "float", by="sampler"), Column("metric", "str", by="sampler"),
    Column("value", "number", by="sampler"), Column("replica", "str", REPLICA.doc, optional=True, by="sampler"),
    *_keys(),
), replica=True, categorical=("metric",)))

QUERY_EVENTS = register_table(Table("query_events", "per-query ProfileEvents from system.query_log", (
    Column("query_id", "str"), Column("event", "str"), Column("value", "int"),
    Column("replica", "str", REPLICA.doc, optional=True), Column("engine", "str"),
), replica=True, lazy=True, categorical=("query_id", "event")))

LOCKS = register_table(Table("locks", "the lock catalog of each engine", (
    Column("event", "str", "the ProfileEvent", by="catalog"), Column("lock", "str", by="catalog"),
    Column("mode", "str", "exclusive, shared or unknown", by="catalog"),
    Column("role", "str", "wait, hold or count", by="catalog"),
    Column("unit", "str", by="catalog"), Column("to_us", "float", "factor to microseconds", by="catalog"),
    Column("description", "str", by="catalog"), Column("engine", "str"),
)))

DRIVER = register_table(Table("driver", "what py-spy saw of the driver's threads, per level", (
    *_keys(), Column("seconds", "float"), Column("rate_hz", "number"), Column("engine_threads", "float"),
    Column("gil_demand", "float"), Column("waiting_threads", "float"), Column("samples", "int"),
)))

DRIVER_STACKS = register_table(Table("driver_stacks", "the driver's folded Python stacks, per level", (
    *_keys(), Column("thread", "str"), Column("stack", "str"), Column("samples", "int"), Column("category", "str"),
)))

STACKS = register_table(Table("stacks", "server engines: folded stacks from system.trace_log", (
    Column("query_id", "str", by="trace_log"), Column("trace_type", "str", by="trace_log"),
    Column("event", "str", by="trace_log"), Column("stack", "str", by="trace_log"),
    Column("samples", "int", by="trace_log"), Column("weight", "number", by="trace_log"),
    Column("replica", "str", REPLICA.doc, optional=True), *_keys(),
), replica=True))
