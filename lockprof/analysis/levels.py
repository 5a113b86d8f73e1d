"""Per-level throughput and latency over the measured windows."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lockprof.analysis.load import Run
from lockprof.analysis.memo import per_run

KEYS = ["engine", "schema", "concurrency"]


@per_run
def level_summary(run: Run) -> pd.DataFrame:
    """Per (engine, schema, concurrency): throughput and latency over the measured windows."""
    levels = run.levels.copy()
    levels["window_s"] = levels["measure_end_s"] - levels["measure_start_s"]
    if "target_qps" not in levels:
        levels["target_qps"] = float("nan")  # runs from before open loop existed
    per_level = levels.groupby(KEYS, as_index=False).agg(
        window_s=("window_s", "sum"),
        queries=("queries", "sum"),
        errors=("errors", "sum"),
        repetitions=("repetition", "nunique"),
        active_parts=("active_parts_before", "mean"),
        interrupted=("interrupted", "any"),
        target_qps=("target_qps", "first"),
    )
    ok = run.measured([*KEYS, "latency_ms", "queue_delay_ms", "error"])
    ok = ok[ok["error"].isna()]
    latency = ok.groupby(KEYS, as_index=False)["latency_ms"].agg(
        p50_ms="median",
        p99_ms=lambda s: float(np.percentile(s, 99)),
        mean_ms="mean",
    )
    out = per_level.merge(latency, on=KEYS, how="left")
    if "queue_delay_ms" in ok:
        delay = ok.groupby(KEYS, as_index=False)["queue_delay_ms"].agg(
            queue_delay_p99_ms=lambda s: float(np.percentile(s, 99))
        )
        out = out.merge(delay, on=KEYS, how="left")
    out["throughput_qps"] = out["queries"] / out["window_s"]
    return out.sort_values(KEYS, ignore_index=True)
