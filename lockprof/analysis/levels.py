"""Per-level throughput and latency over the measured windows, and each query's place in them."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lockprof.analysis.health import FEW_PER_THREAD
from lockprof.analysis.load import Run
from lockprof.analysis.memo import per_run

KEYS = ["engine", "schema", "concurrency"]

# The 95% intervals of p50 and p99 (see level_summary): queries close in time share their fate (a stall,
# a merge, a busy neighbour), so the unit resampled is a block of this many seconds of a window, not a query.
BLOCK_S = 1.0
MIN_BLOCKS = 5  # fewer blocks than this in a level: too few to resample, the interval is NaN
MAX_BLOCKS = 600  # a level measured longer than this many blocks gets longer blocks, so it stays fast
RESAMPLES = 1000
SEED = 20240611  # fixed: the same run gives the same intervals every time
BIN_RATIO = 1.005  # resampled percentiles are read from log-spaced bins this wide (0.5%), then interpolated
MAX_BINS = 4000
INTERVAL_COLUMNS = ["p50_ci_low_ms", "p50_ci_high_ms", "p99_ci_low_ms", "p99_ci_high_ms"]


@per_run
def level_summary(run: Run) -> pd.DataFrame:
    """Per (engine, schema, concurrency): throughput and latency over the measured windows, with 95%
    intervals for p50 and p99 (``p50_ci_low_ms`` ... ``p99_ci_high_ms``).

    The intervals come from a block bootstrap, since queries close in time are not independent (one stall
    slows many at once): each window is cut into consecutive ``BLOCK_S`` blocks by start time (longer when
    a level has more than ``MAX_BLOCKS`` seconds, to stay fast), and a
    resample draws blocks with replacement. With several windows (repetitions) it is two-stage: the
    windows are drawn with replacement first, then blocks within each drawn window, so the interval also
    holds how much repetitions differ. Each of ``RESAMPLES`` resamples gives the pooled percentile (read from
    0.5%-wide log bins, interpolated); the interval is their 2.5th to 97.5th percentile, widened to contain
    the point estimate if binning left it just outside. Seeded, so deterministic. NaN with fewer than
    ``MIN_BLOCKS`` blocks (windows under a few seconds): too little to resample."""
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
    out = out.merge(_percentile_intervals(_window_queries(run), out), on=KEYS, how="left")
    out = out.merge(_censored(run), on=KEYS, how="left").fillna({"censored": 0, "censored_max_ms": float("nan")})
    out["censored"] = out["censored"].astype(int)
    # A query cut when the window closed ran at least this long: above the p99 of those that finished, the true
    # p99 can only be higher, so the figure is a lower bound.
    out["p99_lower_bound"] = out["censored_max_ms"] > out["p99_ms"]
    # One or two queries per thread and window: a rate of so few is not a throughput (a 1 ms window with one
    # query would read 1000/s), and a p99 of them is their maximum.
    # (Observed windows count other clients' queries, not lockprof's threads: any number of them is a rate.)
    observed = any(m.parameters.get("mode") == "observe" for m in run.manifests)
    closed = out["target_qps"].isna() & ~out["interrupted"].astype(bool) & (not observed)
    out["too_few"] = closed & (out["queries"] < FEW_PER_THREAD * out["concurrency"] * out["repetitions"])
    return out.sort_values(KEYS, ignore_index=True)


def _censored(run: Run) -> pd.DataFrame:
    """Per level: the queries still running when their window closed, and the longest time one of them was seen."""
    cut = run.measured([*KEYS, "latency_ms", "censored"])
    if "censored" not in cut:  # runs from before censoring was recorded
        return pd.DataFrame(columns=[*KEYS, "censored", "censored_max_ms"])
    cut = cut[cut["censored"].fillna(False).astype(bool)]
    return cut.groupby(KEYS, as_index=False).agg(censored=("latency_ms", "size"), censored_max_ms=("latency_ms", "max"))


def _percentile_intervals(timed: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """The block-bootstrap intervals of p50 and p99 per level (see :func:`level_summary`)."""
    rows = []
    indexed = summary.set_index(KEYS)
    for key, level in timed.groupby(KEYS, sort=False):
        p50, p99, window_s = indexed.loc[key, ["p50_ms", "p99_ms", "window_s"]] if key in indexed.index else (
            np.nan, np.nan, 0.0)
        block_s = max(BLOCK_S, float(window_s) / MAX_BLOCKS) if np.isfinite(window_s) else BLOCK_S
        (lo50, hi50), (lo99, hi99) = _block_bootstrap(
            level["latency_ms"].to_numpy(dtype=float), level["window"].to_numpy(),
            np.floor(level["window_t_s"].to_numpy(dtype=float) / block_s).clip(min=0).astype(np.int64),
            (0.5, 0.99), (p50, p99))
        rows.append((*key, lo50, hi50, lo99, hi99))
    return pd.DataFrame(rows, columns=[*KEYS, *INTERVAL_COLUMNS])


def _block_bootstrap(latency: np.ndarray, window: np.ndarray, block: np.ndarray, quantiles: tuple[float, ...],
                     estimates: tuple[float, ...]) -> list[tuple[float, float]]:
    """(low, high) of the 95% interval of each quantile of one level's latencies, resampling windows and then
    the time blocks within them; NaN pairs when there are fewer than ``MIN_BLOCKS`` blocks."""
    nan = [(np.nan, np.nan)] * len(quantiles)
    window = np.asarray(window, dtype=np.int64)
    key = window * (int(block.max()) + 1) + block  # one id per (window, block), numbered densely below
    present = np.bincount(key) > 0
    block_of = (np.cumsum(present) - 1)[key]
    n_blocks = int(present.sum())
    block_window = np.flatnonzero(present) // (int(block.max()) + 1)
    if n_blocks < MIN_BLOCKS or len(latency) == 0:
        return nan
    lo, hi = float(latency.min()), float(latency.max())
    if lo == hi:  # every query took the same time: nothing varies
        return [(lo, lo)] * len(quantiles)
    if lo > 0:
        ratio = max(BIN_RATIO, (hi / lo) ** (1 / MAX_BINS))
        edges = lo * ratio ** np.arange(int(np.ceil(np.log(hi / lo) / np.log(ratio))) + 1)
        edges[-1] = max(edges[-1], hi)
    else:  # not a latency anyone measured, but never a crash: even bins
        edges = np.linspace(lo, hi, MAX_BINS + 1)
    n_bins = len(edges) - 1
    bins = np.clip(np.searchsorted(edges, latency, side="right") - 1, 0, n_bins - 1)
    hist = np.bincount(block_of * n_bins + bins, minlength=n_blocks * n_bins).reshape(n_blocks, n_bins)

    rng = np.random.default_rng(SEED)
    windows = np.unique(block_window)
    drawn = rng.integers(0, len(windows), size=(RESAMPLES, len(windows)))
    weights = np.zeros((RESAMPLES, n_blocks))
    for i, w in enumerate(windows):
        mine = np.flatnonzero(block_window == w)
        times = (drawn == i).sum(axis=1)  # how often this window was drawn, per resample
        weights[:, mine] = rng.multinomial(times * len(mine), np.full(len(mine), 1 / len(mine)))
    counts = weights @ hist
    cumulative = np.cumsum(counts, axis=1)
    out = []
    for q, estimate in zip(quantiles, estimates, strict=True):
        target = q * cumulative[:, -1]
        at = (cumulative < target[:, None]).sum(axis=1).clip(max=n_bins - 1)  # the bin the quantile falls in
        before = np.where(at > 0, cumulative[np.arange(RESAMPLES), at - 1], 0.0)
        inside = counts[np.arange(RESAMPLES), at]
        frac = np.clip((target - before) / np.where(inside > 0, inside, 1.0), 0.0, 1.0)
        left, right = edges[at], edges[at + 1]
        values = left * (right / left) ** frac if lo > 0 else left + (right - left) * frac
        low, high = np.percentile(values, [2.5, 97.5])
        if np.isfinite(estimate):  # the interval of a binned statistic may miss its exact value by a bin
            low, high = min(low, estimate), max(high, estimate)
        out.append((float(np.clip(low, lo, hi)), float(np.clip(high, lo, hi))))
    return out


@per_run
def query_timeline(run: Run) -> pd.DataFrame:
    """Each measured, successful query's latency against when it started: ``window_t_s`` within its own
    measured window, ``t_s`` within its level with the repetitions' windows laid end to end (so that a
    stall in one repetition is not drawn over another), ``window`` numbering the level's windows from 0,
    and ``tail`` marking the queries at or above the level's p99 (the ones :func:`level_summary`'s
    ``p99_ms`` is about). A stall shows as many tail queries that started close together."""
    columns = [*KEYS, "repetition", "window", "window_t_s", "t_s", "latency_ms", "tail"]
    out = _window_queries(run)
    if out.empty:
        return pd.DataFrame(columns=columns)
    p99 = out.groupby(KEYS)["latency_ms"].transform(lambda s: float(np.percentile(s, 99)))
    out["tail"] = out["latency_ms"] >= p99
    return out[columns].sort_values([*KEYS, "t_s"], ignore_index=True)


@per_run
def _window_queries(run: Run) -> pd.DataFrame:
    """The measured, successful queries with their window (numbered per level) and start times within it."""
    ok = run.measured([*KEYS, "repetition", "run_id", "start_s", "latency_ms", "error"])
    ok = ok[ok["error"].isna()]
    windows = _windows(run)
    on = [*KEYS, "repetition"] + (["run_id"] if "run_id" in ok and "run_id" in windows else [])
    out = ok.drop(columns="error").merge(windows[[*on, "window", "measure_start_s", "offset_s"]], on=on, how="inner")
    out["window_t_s"] = out["start_s"] - out["measure_start_s"]
    out["t_s"] = out["window_t_s"] + out["offset_s"]
    return out


def _windows(run: Run) -> pd.DataFrame:
    """Each level's measured windows in the order they ran, numbered from 0, with where each begins when they
    are laid end to end (``offset_s``)."""
    windows = run.levels.sort_values("measure_start_s").copy()
    windows["window_s"] = (windows["measure_end_s"] - windows["measure_start_s"]).clip(lower=0)
    level = windows.groupby(KEYS, sort=False)
    windows["window"] = level.cumcount()
    windows["offset_s"] = level["window_s"].cumsum() - windows["window_s"]
    return windows
