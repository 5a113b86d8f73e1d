"""The lock budget of a query: wait, hold and acquisitions per lock and mode, and their shares."""

from __future__ import annotations

import pandas as pd

from lockprof.analysis.accounting import THREAD_TIME, lock_waits, per_query, window_totals
from lockprof.analysis.levels import KEYS, level_summary
from lockprof.analysis.load import Run
from lockprof.analysis.memo import per_run

BUDGET_COLUMNS = [*KEYS, "lock", "mode", "wait_us_per_query", "hold_us_per_query", "acquisitions_per_query",
                  "hold_us_per_acquisition", "wait_share_of_thread_time", "wait_share_of_latency", "source"]


@per_run
def lock_budget(run: Run) -> pd.DataFrame:
    """Per (engine, schema, concurrency, lock, mode): wait, hold and acquisitions per query.

    Made from the run's one source of counters (see :mod:`lockprof.analysis.accounting`): every
    query's own ProfileEvents when all engines kept a query log, else ``system.events`` deltas over
    the measured windows for all engines. A counter the engine does not have is NaN, not zero.
    """
    waits = lock_waits(run)
    if waits.empty:
        return pd.DataFrame(columns=BUDGET_COLUMNS)
    thread = per_query(window_totals(run))
    thread = thread[thread["event"] == THREAD_TIME][[*KEYS, "per_query"]].rename(columns={"per_query": "thread_us"})
    latency = level_summary(run)[[*KEYS, "mean_ms"]]
    out = waits.merge(thread, on=KEYS, how="left").merge(latency, on=KEYS, how="left")
    out["hold_us_per_acquisition"] = out["hold_us_per_query"] / out["acquisitions_per_query"].where(
        out["acquisitions_per_query"] > 0)
    out["wait_share_of_thread_time"] = out["wait_us_per_query"] / out["thread_us"].where(out["thread_us"] > 0)
    out["wait_share_of_latency"] = out["wait_us_per_query"] / (out["mean_ms"] * 1000.0)
    return out[BUDGET_COLUMNS].sort_values([*KEYS, "lock", "mode"], ignore_index=True)
