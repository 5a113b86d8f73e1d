"""Per-level throughput and latency over the measured windows, and each query's place in them."""

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


@per_run
def query_timeline(run: Run) -> pd.DataFrame:
    """Each measured, successful query's latency against when it started: ``window_t_s`` within its own
    measured window, ``t_s`` within its level with the repetitions' windows laid end to end (so that a
    stall in one repetition is not drawn over another), ``window`` numbering the level's windows from 0,
    and ``tail`` marking the queries at or above the level's p99 (the ones :func:`level_summary`'s
    ``p99_ms`` is about). A stall shows as many tail queries that started close together."""
    columns = [*KEYS, "repetition", "window", "window_t_s", "t_s", "latency_ms", "tail"]
    ok = run.measured([*KEYS, "repetition", "run_id", "start_s", "latency_ms", "error"])
    ok = ok[ok["error"].isna()]
    if ok.empty:
        return pd.DataFrame(columns=columns)
    windows = _windows(run)
    on = [*KEYS, "repetition"] + (["run_id"] if "run_id" in ok and "run_id" in windows else [])
    out = ok.drop(columns="error").merge(windows[[*on, "window", "measure_start_s", "offset_s"]], on=on, how="inner")
    out["window_t_s"] = out["start_s"] - out["measure_start_s"]
    out["t_s"] = out["window_t_s"] + out["offset_s"]
    p99 = out.groupby(KEYS)["latency_ms"].transform(lambda s: float(np.percentile(s, 99)))
    out["tail"] = out["latency_ms"] >= p99
    return out[columns].sort_values([*KEYS, "t_s"], ignore_index=True)


def _windows(run: Run) -> pd.DataFrame:
    """Each level's measured windows in the order they ran, numbered from 0, with where each begins when they
    are laid end to end (``offset_s``)."""
    windows = run.levels.sort_values("measure_start_s").copy()
    windows["window_s"] = (windows["measure_end_s"] - windows["measure_start_s"]).clip(lower=0)
    level = windows.groupby(KEYS, sort=False)
    windows["window"] = level.cumcount()
    windows["offset_s"] = level["window_s"].cumsum() - windows["window_s"]
    return windows
