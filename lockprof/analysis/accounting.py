"""Where a query's time goes: counter totals per measurement window, and the time accounting built on them.

Every per-query figure lockprof prints (lock budget, time accounting, A/B lock metrics) is
``sum(total) / sum(queries)`` over the windows of a level, from one table made here, so one
metric has one value in every output.

The source is chosen once per run (or set of runs compared together): each query's own
ProfileEvents from ``system.query_log`` when every engine kept a query log, otherwise
``system.events`` deltas for every engine, restricted to the measured windows. Mixing the two
would compare a query's own counters with process-wide ones that also count the samplers'
queries, so a comparison never does.

Thread time (``RealTimeMicroseconds``, summed over a query's threads) splits into time on a
CPU, time runnable but waiting for a CPU, IO wait, each lock's wait, and the rest, which
this module reports as ``other`` instead of hiding it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lockprof.analysis.columnar import event_sums, frame_matrix
from lockprof.analysis.levels import level_summary
from lockprof.analysis.load import Run
from lockprof.analysis.memo import per_run

WINDOW = ["engine", "schema", "concurrency", "repetition"]
LEVEL = ["engine", "schema", "concurrency"]
QUERY_LOG = "query_log"
EVENTS = "events"
SOURCE_TEXT = {QUERY_LOG: "each query's ProfileEvents (system.query_log)",
               EVENTS: "system.events deltas over the measured windows (all of the process's threads)"}

THREAD_TIME = "RealTimeMicroseconds"
ON_CPU = "OSCPUVirtualTimeMicroseconds"
ON_CPU_PARTS = ("UserTimeMicroseconds", "SystemTimeMicroseconds")  # where OSCPUVirtualTime is missing
CPU_WAIT = "OSCPUWaitMicroseconds"
IO_WAIT = "OSIOWaitMicroseconds"
# Derived per query from system.query_thread_log where it is kept (lockprof/samplers/query_log.py): the time the
# query's calling thread and pipeline executor slept while its pipeline ran, which no ProfileEvent counts
# (docs/remainder.md). It repeats wall time another thread of the query accounts for: not a cost of its own.
OWN_THREADS = "LockprofOwnThreadsWaitMicroseconds"
COMPONENTS = ["on_cpu", "cpu_wait", "io_wait", "lock_wait", "own_threads", "other"]
COMPONENT_TEXT = {"on_cpu": "on a CPU", "cpu_wait": "waiting for a CPU", "io_wait": "waiting for IO",
                  "lock_wait": "waiting for locks", "own_threads": "waiting for the query's own threads",
                  "other": "other (not accounted for)"}

TOTAL_COLUMNS = [*WINDOW, "event", "total", "queries", "source"]


def choose_source(run: Run) -> str:
    """``query_log`` when every engine of the run has per-query ProfileEvents, else ``events``."""
    engines = set(run.levels["engine"].astype(str).unique())
    disk = run.query_events_on_disk()
    if disk is not None:
        logged = disk.distinct("engine")
    else:
        logged = set(run.query_events["engine"].astype(str).unique()) if not run.query_events.empty else set()
    return QUERY_LOG if engines and engines <= logged else EVENTS


@per_run
def window_totals(run: Run, source: str | None = None) -> pd.DataFrame:
    """One row per (engine, schema, concurrency, repetition, event): the counter summed over the window's
    measured queries (raw unit), the number of measured queries it covers, and the source."""
    source = source or choose_source(run)
    frame = _from_query_log(run) if source == QUERY_LOG else _from_events(run)
    if frame.empty:
        return pd.DataFrame(columns=TOTAL_COLUMNS)
    return frame.assign(source=source)[TOTAL_COLUMNS]


def _measured_windows(run: Run) -> tuple[pd.DataFrame, pd.Series]:
    """Measured queries that succeeded (background statements and failed or cancelled queries excluded: their
    time says nothing about a query's cost) and their window number."""
    measured = run.measured([*WINDOW, "query_id", "error"])
    measured = measured[measured["error"].isna()]
    window = measured.groupby(WINDOW, sort=True).ngroup()
    return measured, window


def _from_query_log(run: Run) -> pd.DataFrame:
    return _query_log_pass(run)[0]


# Besides the window totals, the one pass over the per-query files keeps each measured statement's own values of
# these (and of every lock-catalog event), which the tail, the exclusive holds, the lock spread and the lock time
# outside the queries read (lockprof.analysis.per_query): the time components, and what tells an engine's own
# insert (a system-log flush) or merge apart.
STATEMENT_EXTRA = (THREAD_TIME, ON_CPU, *ON_CPU_PARTS, CPU_WAIT, IO_WAIT, OWN_THREADS, "InsertedRows",
                   "MergeTotalMilliseconds", "MergedIntoWideParts", "MergedIntoCompactParts")


@per_run
def measured_statements(run: Run) -> pd.DataFrame:
    """The successful statements of the measured windows, queries and background statements, once each."""
    statements = run.queries
    statements = statements[(statements["phase"] == "measure") & statements["error"].isna()]
    # Driver ids are unique; checking that through an index is much cheaper than dropping duplicates.
    return statements if pd.Index(statements["query_id"]).is_unique else statements.drop_duplicates("query_id")


def statement_matrix(run: Run) -> tuple[list[str], np.ndarray]:
    """(event names, each measured statement's own value of each): rows in the order of
    :func:`measured_statements`, columns every lock-catalog event and ``STATEMENT_EXTRA``. Shared: do not
    change it."""
    return _query_log_pass(run)[1:]


@per_run
def _query_log_pass(run: Run) -> tuple[pd.DataFrame, list[str], np.ndarray]:
    """(window totals from the query log, the statement events, the statement matrix), from one pass."""
    own_events = sorted({*run.locks["event"].astype(str), *STATEMENT_EXTRA})
    statements = measured_statements(run)
    nothing = np.zeros((len(statements), len(own_events)))
    disk = run.query_events_on_disk()
    if statements.empty or (disk.empty if disk is not None else run.query_events.empty):
        return pd.DataFrame(), own_events, nothing
    measured, window = _measured_windows(run)
    window = window.to_numpy()
    if not pd.Index(measured["query_id"]).is_unique:
        first = ~measured["query_id"].duplicated().to_numpy()
        measured, window = measured[first], window[first]
    ids = pd.Index(statements["query_id"].astype(str))
    n_windows = int(window.max()) + 1 if len(window) else 0
    # Every statement's own values are kept; only the measured queries add to a window (the rest: the last row).
    windows = np.full(len(ids), n_windows, dtype=np.int64)
    windows[ids.get_indexer(measured["query_id"].astype(str))] = window
    if disk is not None:  # aggregated in the files, part by part; only the sums reach pandas
        sums, names, logged, own = event_sums(disk, ids, windows, n_windows, own_events)
    else:
        sums, names, logged, own = _event_sums_in_memory(run.query_events, ids, windows, n_windows, own_events)
    if not n_windows:
        return pd.DataFrame(), own_events, own
    # Only queries the log has count: a query whose row was lost says nothing about where time went.
    queries = np.bincount(windows[logged & (windows < n_windows)], minlength=n_windows)
    labels = measured.groupby(WINDOW, sort=True).size().reset_index()[WINDOW]  # window number -> its keys
    # Events in name order within each window, whichever order the files or the frame hold them in.
    order = np.argsort(np.asarray(names, dtype=object), kind="stable")
    sums, names = sums[:, order], np.asarray(names, dtype=object)[order]
    win_of, event_of = np.nonzero(sums)
    out = labels.iloc[win_of].reset_index(drop=True)
    out["event"] = names[event_of].astype(str) if len(names) else np.array([], dtype=str)
    out["total"] = sums[win_of, event_of]
    out["queries"] = queries[win_of]
    return out[out["queries"] > 0], own_events, own


def _event_sums_in_memory(events: pd.DataFrame, ids: pd.Index, window: np.ndarray, n_windows: int,
                          own_events: list[str]) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray]:
    """What :func:`lockprof.analysis.columnar.event_sums` computes from the files, from a frame in memory."""
    # Match through the categories: a run holds dozens of ProfileEvents per query, and their ids are
    # read as a categorical, so each distinct id is looked up once.
    query_id = pd.Categorical(events["query_id"])
    per_category = np.append(ids.get_indexer(query_id.categories.astype(str)), -1)
    position = per_category[np.asarray(query_id.codes)]
    event = pd.Categorical(events["event"])  # a no-op for the categorical column load_run gives
    codes = np.asarray(event.codes)
    found = (position >= 0) & (codes >= 0)
    logged = np.zeros(len(ids), dtype=bool)
    logged[position[found]] = True
    values = events["value"].to_numpy(dtype=float)
    own = frame_matrix(events, ids, own_events)
    k = len(event.categories)
    found &= np.append(window, n_windows)[position] < n_windows  # statements outside the windows: own values only
    key = window[position[found]].astype(np.int64) * k + codes[found]
    sums = np.bincount(key, weights=values[found], minlength=n_windows * k)
    return sums.reshape(n_windows, k), [str(c) for c in event.categories], logged, own


def _from_events(run: Run) -> pd.DataFrame:
    events = run.events
    measured, _ = _measured_windows(run)
    if events.empty or measured.empty:
        return pd.DataFrame()
    windows = run.levels[[*WINDOW, "measure_start_s", "measure_end_s"]].drop_duplicates(WINDOW)
    rows = events.merge(windows, on=WINDOW, how="inner")
    # A sampler interval belongs to the window that holds its middle: warm-up and the gaps between
    # levels (dataset checks, log flushes) stay out, the samples straddling an edge are split fairly.
    middle = rows["t_s"] - rows["interval_s"] / 2.0
    rows = rows[(middle >= rows["measure_start_s"]) & (middle <= rows["measure_end_s"])]
    totals = rows.groupby([*WINDOW, "event"], as_index=False, observed=True)["delta"].sum()
    totals = totals.rename(columns={"delta": "total"})
    counts = measured.groupby(WINDOW, as_index=False).size().rename(columns={"size": "queries"})
    out = totals.merge(counts, on=WINDOW, how="inner")
    out["event"] = out["event"].astype(str)
    out["total"] = out["total"].astype(float)
    return out[out["queries"] > 0]


def per_query(totals: pd.DataFrame, keys: list[str] = LEVEL) -> pd.DataFrame:
    """sum(total) / sum(queries) per keys and event: the one way a per-query figure is made.

    A window that lacks an event (a zero counter is not stored) still counts its queries."""
    if totals.empty:
        return pd.DataFrame(columns=[*keys, "event", "per_query", "queries", "source"])
    queries = totals.drop_duplicates(WINDOW).groupby(keys, as_index=False)["queries"].sum()
    sums = totals.groupby([*keys, "event"], as_index=False)["total"].sum()
    out = sums.merge(queries, on=keys)
    out["per_query"] = out["total"] / out["queries"]
    out["source"] = totals["source"].iloc[0]
    return out.drop(columns="total")


@per_run
def lock_waits(run: Run, keys: tuple[str, ...] = tuple(LEVEL), source: str | None = None) -> pd.DataFrame:
    """Per keys, lock and mode: wait, hold and acquisitions per query (NaN where the engine has no such
    counter, so "not measured" never reads as zero), from the run's source of counters unless ``source`` is given
    (then only the engines that have it)."""
    keys = list(keys)
    totals = window_totals(run, source)
    catalog = run.locks[["engine", "event", "lock", "mode", "role", "to_us"]].drop_duplicates(["engine", "event"])
    pq = per_query(totals, keys)
    if pq.empty or catalog.empty:
        return pd.DataFrame(columns=[*keys, "lock", "mode", "wait_us_per_query", "hold_us_per_query",
                                     "acquisitions_per_query", "source"])
    rows = pq.merge(catalog, on=["engine", "event"], how="inner")
    rows["amount"] = np.where(rows["role"] == "count", rows["per_query"], rows["per_query"] * rows["to_us"])
    wide = rows.pivot_table(index=[*keys, "lock", "mode"], columns="role", values="amount", aggfunc="sum")
    wide = wide.reindex(columns=["wait", "hold", "count"]).reset_index()
    # Counters the engine has but that stayed zero are 0; counters it lacks are NaN.
    has = catalog.groupby(["engine", "lock", "mode"])["role"].agg(set).rename("roles").reset_index()
    wide = wide.merge(has, on=["engine", "lock", "mode"], how="left")
    for role in ("wait", "hold", "count"):
        present = wide["roles"].map(lambda r, role=role: isinstance(r, set) and role in r)
        wide[role] = np.where(present, wide[role].fillna(0.0), np.nan)
    out = wide.rename(columns={"wait": "wait_us_per_query", "hold": "hold_us_per_query",
                               "count": "acquisitions_per_query"}).drop(columns="roles")
    out["source"] = totals["source"].iloc[0]
    return out


@per_run
def time_accounting(run: Run) -> pd.DataFrame:
    """Per level (engine, schema, concurrency): thread time per query split into on-CPU, waiting for a CPU,
    IO wait, lock waits, waiting for the query's own threads (NaN where the engine kept no thread log) and the
    rest, in ms per query and as shares of thread time, beside wall latency.

    Shares add up to 100%: when the parts sum to more than the thread time (counters of different threads
    overlap a little), they are shares of their sum and ``other`` is zero."""
    totals = window_totals(run)
    columns = [*LEVEL, "queries", "throughput_qps", "latency_ms", "thread_ms", *(f"{c}_ms" for c in COMPONENTS),
               *(f"{c}_share" for c in COMPONENTS), "source"]
    if totals.empty:
        return pd.DataFrame(columns=columns)
    long = per_query(totals)
    pq = long.pivot_table(index=LEVEL, columns="event", values="per_query", aggfunc="sum")
    queries = long.drop_duplicates(LEVEL).set_index(LEVEL)["queries"]
    wide = pd.DataFrame(index=pq.index)
    col = lambda name: pq[name].fillna(0.0) if name in pq else pd.Series(0.0, index=pq.index)  # noqa: E731
    on_cpu = col(ON_CPU) if ON_CPU in pq else sum(col(n) for n in ON_CPU_PARTS)
    waits = lock_waits(run)
    lock_wait = waits.groupby(LEVEL)["wait_us_per_query"].sum(min_count=1).reindex(pq.index).fillna(0.0)
    wide["queries"] = queries.reindex(pq.index)
    wide["thread_ms"] = col(THREAD_TIME) / 1000.0
    wide["on_cpu_ms"] = on_cpu / 1000.0
    wide["cpu_wait_ms"] = col(CPU_WAIT) / 1000.0
    wide["io_wait_ms"] = col(IO_WAIT) / 1000.0
    wide["lock_wait_ms"] = lock_wait / 1000.0
    # NaN where the engine kept no thread log: then "other" still holds the own-thread waits.
    wide["own_threads_ms"] = pq[OWN_THREADS] / 1000.0 if OWN_THREADS in pq else np.nan
    known = wide[["on_cpu_ms", "cpu_wait_ms", "io_wait_ms", "lock_wait_ms", "own_threads_ms"]].sum(axis=1)
    wide["other_ms"] = (wide["thread_ms"] - known).clip(lower=0.0)
    whole = np.maximum(wide["thread_ms"], known)
    for c in COMPONENTS:
        wide[f"{c}_share"] = np.where(whole > 0, wide[f"{c}_ms"] / whole, np.nan)
    out = wide.reset_index()
    levels = level_summary(run)[[*LEVEL, "mean_ms", "throughput_qps"]].rename(columns={"mean_ms": "latency_ms"})
    out = out.merge(levels, on=LEVEL, how="left")
    out["source"] = totals["source"].iloc[0]
    return out[columns].sort_values(LEVEL, ignore_index=True)

