"""Each query's own counters, one row per query: what the distributions, the tail and rare exclusive holds
are read from.

The time accounting and the lock budget are means per query (``sum / queries`` per level). A mean hides
what the incident behind this tool was about: one query in a few hundred holding a lock exclusively for
milliseconds stalls every reader for that long, and shows in the budget as microseconds per query. So the
same ProfileEvents are also kept per query, for the queries whose own counters the engine logged
(``system.query_log``); an engine without a query log has no rows here.

Components are the accounting's, per query: ``other_us`` is thread time minus on-CPU, CPU wait, IO wait,
lock waits and waiting for the query's own threads, *not* clipped at zero, so the mean of a level's rows is
the accounting's figure exactly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lockprof.analysis.accounting import (
    CPU_WAIT,
    IO_WAIT,
    ON_CPU,
    ON_CPU_PARTS,
    OWN_THREADS,
    THREAD_TIME,
    WINDOW,
    measured_statements,
    statement_matrix,
)
from lockprof.analysis.columnar import frame_matrix, query_matrix
from lockprof.analysis.load import Run
from lockprof.analysis.memo import per_run

TIME = {"thread_us": THREAD_TIME, "on_cpu_us": ON_CPU, "cpu_wait_us": CPU_WAIT, "io_wait_us": IO_WAIT,
        "own_threads_us": OWN_THREADS}
# Wall timers of the planning phases (they may overlap one another) and what the query selected.
PHASES = {"parse_us": "QueryParseMicroseconds", "analysis_us": "QueryAnalysisMicroseconds",
          "plan_build_us": "QueryPlanBuildMicroseconds", "plan_optimize_us": "QueryPlanOptimizeMicroseconds",
          "pipeline_build_us": "QueryPipelineBuildMicroseconds"}
SELECTION = {"selected_parts": "SelectedParts", "selected_parts_total": "SelectedPartsTotal",
             "selected_marks": "SelectedMarks", "selected_marks_total": "SelectedMarksTotal",
             "selected_rows": "SelectedRows"}
ROLE_SUFFIX = {"wait": "wait_us", "hold": "hold_us", "count": "acquisitions"}
KEY_COLUMNS = [*WINDOW, "role", "query_name", "query_id", "start_s", "end_s", "latency_ms"]


def lock_column(lock: str, mode: str, role: str) -> str:
    """The column of a lock's counter: ``parts_exclusive_hold_us``, ``parts_shared_acquisitions``…"""
    return f"{lock}_{mode}_{ROLE_SUFFIX[role]}"


@per_run
def query_counters(run: Run) -> pd.DataFrame:
    """One row per successful statement of the measured windows that has its own ProfileEvents: the scenario's
    queries (``role == "query"``) and its background statements (another role), with their window, start and
    end (seconds on the run's clock), latency, time components in µs, planning phases, selection counters, and
    each lock's wait (µs), hold (µs) and acquisitions (``lock_column``; NaN where the engine has no such
    counter; locks no statement touched are left out)."""
    return counters_of(run)


def counters_of(run: Run, statements: pd.DataFrame | None = None, part: str = "all") -> pd.DataFrame:
    """:func:`query_counters` for some statements (rows of ``run.queries``; default all) and some counters:
    ``part`` is "all", "time" (the time components and the lock counters: no phases or selection), "locks"
    (thread time and the lock counters) or "exclusive" (the exclusive modes' hold and acquisitions, for finding
    holders). All but "all" are rows of :func:`statement_matrix`, the one pass over the files the summary
    makes beside the accounting's."""
    catalog = run.locks[["engine", "event", "lock", "mode", "role", "to_us"]].drop_duplicates(["engine", "event"])
    measured_all = measured_statements(run)
    statements = measured_all if statements is None else statements.drop_duplicates("query_id")
    lock_events = catalog.drop_duplicates("event").sort_values(["lock", "mode", "role"])
    if part == "exclusive":
        lock_events = lock_events[(lock_events["mode"] == "exclusive") & (lock_events["role"] != "wait")]
    timed = part in ("all", "time")
    events = {"all": [*TIME.values(), *ON_CPU_PARTS, *PHASES.values(), *SELECTION.values()],
              "time": [*TIME.values(), *ON_CPU_PARTS], "locks": [THREAD_TIME], "exclusive": []}[part]
    events += list(lock_events["event"])
    if statements.empty or _no_events(run) or not events:
        return pd.DataFrame(columns=KEY_COLUMNS)
    if part == "all":
        matrix = matrix_of(run, pd.Index(statements["query_id"].astype(str)), events)
    else:  # rows of the shared pass over every statement (a statement not measured has none: zeros)
        names, full = statement_matrix(run)
        rows = pd.Index(measured_all["query_id"].astype(str)).get_indexer(statements["query_id"].astype(str))
        matrix = np.zeros((len(rows), len(events)))
        found = rows >= 0
        matrix[found] = full[rows[found]][:, [names.index(e) for e in events]]
    logged = (matrix != 0).any(axis=1)
    matrix, statements = matrix[logged], statements[logged]
    value = dict(zip(events, matrix.T))
    out = statements[[c for c in KEY_COLUMNS if c in statements and c != "end_s"]].reset_index(drop=True)
    out["end_s"] = out["start_s"] + out["latency_ms"] / 1000.0
    if timed:
        for column, event in TIME.items():
            out[column] = value[event]
        if not value[ON_CPU].any():  # engines without OSCPUVirtualTime: user + system, as the accounting does
            out["on_cpu_us"] = sum(value[e] for e in ON_CPU_PARTS)
        out["lock_wait_us"] = 0.0
    elif part == "locks":
        out["thread_us"] = value[THREAD_TIME]
    engine = out["engine"].astype(str).to_numpy()
    locks = {}
    for _, ev in lock_events.iterrows():
        if not value[ev["event"]].any():
            continue  # no statement touched it: no column
        column = lock_column(ev["lock"], ev["mode"], ev["role"])
        has = np.isin(engine, catalog.loc[catalog["event"] == ev["event"], "engine"].astype(str).to_numpy())
        amount = value[ev["event"]] * (1.0 if ev["role"] == "count" else float(ev["to_us"]))
        locks[column] = locks.get(column, 0.0) + np.where(has, amount, np.nan)
        if ev["role"] == "wait" and timed:
            out["lock_wait_us"] += np.nan_to_num(amount * has)
    if timed:
        if not value[OWN_THREADS].any():  # no thread log: "other" keeps the own-thread waits
            out["own_threads_us"] = np.nan
        known = out[["on_cpu_us", "cpu_wait_us", "io_wait_us", "lock_wait_us", "own_threads_us"]].sum(axis=1)
        out["other_us"] = out["thread_us"] - known
    if part == "all":
        for column, event in {**PHASES, **SELECTION}.items():
            out[column] = value[event]
    return pd.concat([out, pd.DataFrame(locks, index=out.index)], axis=1)


def lock_columns(frame: pd.DataFrame) -> list[tuple[str, str, str, str]]:
    """(lock, mode, role, column) for every lock counter column of a :func:`query_counters` frame."""
    out = []
    for column in frame.columns:
        for role, suffix in ROLE_SUFFIX.items():
            if column.endswith("_" + suffix) and column.count("_") >= 2 and column not in _NOT_LOCKS:
                stem = column[: -len(suffix) - 1]
                lock, _, mode = stem.rpartition("_")
                if mode in ("exclusive", "shared", "unknown") and lock:
                    out.append((lock, mode, role, column))
    return out


_NOT_LOCKS = {*TIME, "lock_wait_us", "other_us", *PHASES, *SELECTION}


def _no_events(run: Run) -> bool:
    disk = run.query_events_on_disk()
    return disk.empty if disk is not None else run.query_events.empty


def matrix_of(run: Run, ids: pd.Index, events: list[str]) -> np.ndarray:
    """Each statement's own counters (``out[i, j]``: event j of statement ids[i]), from the files or the frame."""
    disk = run.query_events_on_disk()
    if disk is not None:
        return query_matrix(disk, ids, events)
    return frame_matrix(run.query_events, ids, events)
