"""Latency and lock hold against the number of active parts: the curve that exposed the
Cloudflare case, where SELECT time tracked the table's total parts, not the parts read."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from lockprof.analysis.budget import lock_budget
from lockprof.analysis.levels import KEYS, level_summary
from lockprof.analysis.load import Run
from lockprof.analysis.memo import per_run

MIN_FIT_POINTS = 3  # a line through two points always fits perfectly and says nothing

PARTS_COLUMNS = [*KEYS, "active_parts", "p50_ms", "p99_ms", "mean_ms", "throughput_qps", "parts_hold_us_per_query",
                 "parts_wait_us_per_query", "lock_hold_us_per_query", "lock_wait_us_per_query"]
SLOPE_COLUMNS = ["engine", "concurrency", "metric", "parts_counts", "per_1000_parts", "intercept", "r_squared",
                 "note"]


@per_run
def parts_dependence(run: Run, lock: str = "parts") -> pd.DataFrame:
    """Per level: active parts, latency, and the hold and wait of ``lock`` and of all locks, per query."""
    summary = level_summary(run)
    if summary.empty:
        return pd.DataFrame(columns=PARTS_COLUMNS)
    budget = lock_budget(run)
    totals = budget.groupby(KEYS, as_index=False)[["hold_us_per_query", "wait_us_per_query"]].sum()
    totals = totals.rename(columns={"hold_us_per_query": "lock_hold_us_per_query",
                                    "wait_us_per_query": "lock_wait_us_per_query"})
    one = budget[budget["lock"] == lock].groupby(KEYS, as_index=False)[["hold_us_per_query", "wait_us_per_query"]]
    one = one.sum().rename(columns={"hold_us_per_query": "parts_hold_us_per_query",
                                    "wait_us_per_query": "parts_wait_us_per_query"})
    out = summary.merge(one, on=KEYS, how="left").merge(totals, on=KEYS, how="left")
    lock_cols = ["parts_hold_us_per_query", "parts_wait_us_per_query", "lock_hold_us_per_query",
                 "lock_wait_us_per_query"]
    out[lock_cols] = out[lock_cols].fillna(0.0)
    return out[PARTS_COLUMNS].sort_values(["engine", "concurrency", "active_parts"], ignore_index=True)


def parts_slopes(frame: pd.DataFrame,
                 metrics: tuple[str, ...] = ("p50_ms", "parts_hold_us_per_query")) -> pd.DataFrame:
    """Least-squares slope of each metric per 1000 active parts, per engine and concurrency.

    Takes the frame of :func:`parts_dependence`. Needs ``MIN_FIT_POINTS`` distinct parts counts;
    with fewer the slope is NaN and the note says so.
    """
    rows = []
    for (engine, concurrency), group in frame.groupby(["engine", "concurrency"], sort=True):
        counts = group["active_parts"].nunique()
        for metric in metrics:
            row = {"engine": engine, "concurrency": concurrency, "metric": metric, "parts_counts": counts,
                   "per_1000_parts": np.nan, "intercept": np.nan, "r_squared": np.nan, "note": ""}
            data = group[["active_parts", metric]].dropna()
            if data["active_parts"].nunique() < MIN_FIT_POINTS:
                row["note"] = (f"{data['active_parts'].nunique()} parts count(s) here; a slope needs "
                               f"{MIN_FIT_POINTS} to be checked by more than its own points")
            else:
                fit = stats.linregress(data["active_parts"], data[metric])
                row.update(per_1000_parts=fit.slope * 1000, intercept=fit.intercept, r_squared=fit.rvalue**2)
            rows.append(row)
    return pd.DataFrame(rows, columns=SLOPE_COLUMNS)


def has_parts_range(frame: pd.DataFrame) -> bool:
    """Whether some engine saw at least ``MIN_FIT_POINTS`` parts counts, so a curve against parts says
    something (two schemas at two counts are a contrast, which the diagnosis states, not a curve)."""
    if frame.empty:
        return False
    return bool((frame.groupby("engine")["active_parts"].nunique() >= MIN_FIT_POINTS).any())
