"""Lock utilization, the exclusive-lock throughput ceiling, and a queueing forecast of lock wait.

An exclusive lock held ``h`` µs per query is busy ``X · h`` of the time at ``X`` queries per
second (its utilization ρ), so no number of cores can push the table past ``1 / h`` queries
per second. As ρ rises, queries queue for the lock; queueing theory says how long.

The model is M/D/1 (Pollaczek–Khinchine with deterministic service): each query holds the
lock for about the same time (copying a parts list of fixed length), so the mean wait is

    W = ρ / (1 − ρ) · h / 2.

The wait does not depend on how many times a query takes the lock: k acquisitions of h/k
each give the same W. Two corrections for a closed-loop driver with N workers: nobody can
queue behind more than the N − 1 others, so W ≤ (N − 1) · h; and the wait already present
at the lowest concurrency (background work, samplers) is added as a baseline. M/M/1
(exponential service, W = ρ / (1 − ρ) · h) is available as the pessimistic alternative.

Everything is forecast from the lowest concurrency level of each engine and schema, then
checked against the waits the same run measured at its higher levels.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lockprof.analysis.budget import lock_budget
from lockprof.analysis.levels import KEYS, level_summary
from lockprof.analysis.load import Run
from lockprof.analysis.memo import per_run

MODELS = {"md1": 0.0, "mm1": 1.0}  # squared coefficient of variation of the hold time
_UTILIZATION_COLUMNS = [*KEYS, "lock", "mode", "hold_us_per_query", "wait_us_per_query", "acquisitions_per_query",
                        "throughput_qps", "utilization", "ceiling_qps"]
_FORECAST_COLUMNS = ["engine", "schema", "lock", "mode", "model", "base_concurrency", "base_hold_us",
                     "base_wait_us", "concurrency", "throughput_qps", "utilization", "forecast_wait_us",
                     "measured_wait_us", "measured_hold_us", "relative_error", "note"]
HOLD_GROWTH = 1.5  # a hold this many times the base one means the model's input no longer holds
# A ceiling is given only for an exclusive lock that at least this share of queries take: a hold of
# 0.03 µs from a merge that 0.14% of the queries met caps nothing.
CEILING_MIN_ACQUISITIONS = 0.01
# Where an engine does not count acquisitions, a lock held at least this long per query counts as taken.
CEILING_MIN_HOLD_US = 1.0


def ceiling_qps(hold_us_per_query: float | np.ndarray) -> float | np.ndarray:
    """Queries per second an exclusive lock held this long per query can ever serve: 1 / h."""
    hold = np.asarray(hold_us_per_query, dtype=float)
    with np.errstate(divide="ignore"):
        out = np.where(hold > 0, 1e6 / np.where(hold > 0, hold, 1.0), np.inf)
    return out if out.ndim else float(out)


def queueing_wait_us(hold_us: float | np.ndarray, utilization: float | np.ndarray,
                     model: str = "md1") -> float | np.ndarray:
    """Mean wait per query for a single-server lock (Pollaczek–Khinchine); infinite at ρ ≥ 1."""
    if model not in MODELS:
        raise ValueError(f"unknown queueing model {model!r}; choose from {sorted(MODELS)}")
    hold = np.asarray(hold_us, dtype=float)
    rho = np.asarray(utilization, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        wait = np.where(rho < 1, rho / (1 - rho) * hold * (1 + MODELS[model]) / 2, np.inf)
    wait = np.where(rho <= 0, 0.0, wait)
    return wait if wait.ndim else float(wait)


def forecast_wait_us(hold_us: float, throughput_qps: float | np.ndarray, concurrency: float | np.ndarray | None = None,
                     baseline_us: float = 0.0, model: str = "md1") -> float | np.ndarray:
    """Wait per query at a given load, capped at (N − 1) holds when N closed-loop workers are known."""
    rho = np.asarray(throughput_qps, dtype=float) * hold_us / 1e6
    wait = np.asarray(queueing_wait_us(hold_us, rho, model))
    if concurrency is not None:
        wait = np.minimum(wait, (np.asarray(concurrency, dtype=float) - 1).clip(min=0) * hold_us)
    out = wait + baseline_us
    return out if out.ndim else float(out)


def has_ceiling(frame: pd.DataFrame) -> pd.Series:
    """Rows (of a lock budget or utilization frame) whose lock caps throughput at 1/h: taken exclusively by
    at least ``CEILING_MIN_ACQUISITIONS`` per query, or, where acquisitions are not counted, held at least
    ``CEILING_MIN_HOLD_US`` per query. The one rule for the table, the ceilings and the forecast."""
    taken = frame["acquisitions_per_query"].where(frame["acquisitions_per_query"].notna(),
                                                  (frame["hold_us_per_query"] >= CEILING_MIN_HOLD_US).astype(float))
    return (frame["mode"] == "exclusive") & (frame["hold_us_per_query"] > 0) & (taken >= CEILING_MIN_ACQUISITIONS)


@per_run
def lock_utilization(run: Run) -> pd.DataFrame:
    """Per level and lock: the share of wall time the lock was held, and the 1/h ceiling.

    Utilization is hold per query × measured throughput (over the levels' measure windows).
    For a shared lock it can exceed 1 (several readers hold it at once) and there is no
    ceiling; for an exclusive lock it is the fraction of the way to the ceiling. The ceiling
    is NaN where the lock fails :func:`has_ceiling` (taken by under 1% of the queries).
    """
    budget = lock_budget(run)
    if budget.empty:
        return pd.DataFrame(columns=_UTILIZATION_COLUMNS)
    summary = level_summary(run)[[*KEYS, "throughput_qps"]]
    out = budget.merge(summary, on=KEYS, how="left")
    out = out[out["hold_us_per_query"] > 0].copy()
    out["utilization"] = out["hold_us_per_query"] * out["throughput_qps"] / 1e6
    out["ceiling_qps"] = np.where(has_ceiling(out), ceiling_qps(out["hold_us_per_query"].to_numpy()), np.nan)
    return out[_UTILIZATION_COLUMNS].sort_values(KEYS + ["lock", "mode"], ignore_index=True)


@per_run
def exclusive_ceilings(run: Run) -> pd.DataFrame:
    """Per engine, schema and exclusive lock the queries take: the ceiling from the hold at the lowest
    level that has one, and how close the highest measured throughput came to it.

    The rows are those of :func:`lock_utilization` with a ceiling (see :func:`has_ceiling`), so the two
    never disagree."""
    util = lock_utilization(run)
    util = util[util["ceiling_qps"].notna()]
    rows = []
    for (engine, schema, lock), group in util.groupby(["engine", "schema", "lock"], sort=True):
        base = group.loc[group["concurrency"].idxmin()]
        peak = group.loc[group["throughput_qps"].idxmax()]
        rows.append({
            "engine": engine, "schema": schema, "lock": lock,
            "base_concurrency": int(base["concurrency"]),
            "hold_us_per_query": float(base["hold_us_per_query"]),
            "ceiling_qps": float(base["ceiling_qps"]),
            "peak_throughput_qps": float(peak["throughput_qps"]),
            "peak_utilization": float(peak["utilization"]),
        })
    columns = ["engine", "schema", "lock", "base_concurrency", "hold_us_per_query", "ceiling_qps",
               "peak_throughput_qps", "peak_utilization"]
    return pd.DataFrame(rows, columns=columns)


def exclusive_holds_without_ceiling(run: Run) -> pd.DataFrame:
    """Exclusive holds the queries met too rarely for a ceiling: per engine, schema and lock, the most
    acquisitions per query at any level (NaN where the engine does not count them)."""
    util = lock_utilization(run)
    rare = util[(util["mode"] == "exclusive") & util["ceiling_qps"].isna()]
    rare = rare[~rare.set_index(["engine", "schema", "lock"]).index.isin(
        exclusive_ceilings(run).set_index(["engine", "schema", "lock"]).index)]
    return rare.groupby(["engine", "schema", "lock"], as_index=False, sort=True).agg(
        acquisitions_per_query=("acquisitions_per_query", "max"), hold_us_per_query=("hold_us_per_query", "max"))


def no_ceiling_reason(run: Run) -> str:
    """Why no exclusive-lock ceiling is given, in one sentence ('' when one is): nothing held exclusively,
    or exclusive holds too rare to cap anything."""
    if not exclusive_ceilings(run).empty:
        return ""
    rare = exclusive_holds_without_ceiling(run)
    if rare.empty:
        return "No exclusive lock taken by the queries reported a hold time, so no ceiling applies."
    names = sorted({str(lock).replace("_", " ") for lock in rare["lock"]})
    locks = f"{names[0]} lock" if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]} locks"
    share = rare["acquisitions_per_query"].max()
    seen = (f"at most {100 * share:.2g} acquisitions per 100 queries" if pd.notna(share)
            else f"held under {CEILING_MIN_HOLD_US:g} µs per query")
    return (f"Exclusive holds were rare: the {locks} was taken exclusively by under "
            f"{CEILING_MIN_ACQUISITIONS:.0%} of the queries ({seen}), too rarely to cap throughput, so no "
            "ceiling is given.")


def uncounted_holds(run: Run, min_wait_us: float = 1.0) -> list[str]:
    """Exclusive locks the queries waited on whose engine counts no hold time for them: one sentence each,
    naming the engines, since a ceiling or a forecast needs the hold and none can be given there (a release may
    lack the counter, or ClickHouse may never have had one)."""
    budget = lock_budget(run)
    if budget.empty:
        return []
    exclusive = budget[(budget["mode"] == "exclusive") & budget["hold_us_per_query"].isna()]
    out = []
    for lock, rows in exclusive.groupby("lock", sort=True):
        waited = rows[rows["wait_us_per_query"] >= min_wait_us]
        if waited.empty:
            continue
        engines = list(dict.fromkeys(waited["engine"].astype(str)))
        where = engines[0] if len(engines) == 1 else f"{', '.join(engines[:-1])} and {engines[-1]}"
        out.append(f"The {str(lock).replace('_', ' ')} lock (exclusive) is waited on, up to "
                   f"{waited['wait_us_per_query'].max():,.0f} µs per query, but {where} count"
                   f"{'s' if len(engines) == 1 else ''} no hold time for it, so no ceiling or forecast can be given "
                   "for it there.")  # fmt: skip
    return out


@per_run
def wait_forecast(run: Run, model: str = "md1", modes: tuple[str, ...] = ("exclusive",)) -> pd.DataFrame:
    """Forecast each lock's wait at every level from the lowest level's hold, and compare.

    The load at each level is its measured throughput; the forecast uses only the base
    level's hold and wait. ``relative_error`` is (forecast − measured) / measured, NaN
    when nothing was measured. Shared locks are left out by default: readers do not
    queue behind readers, so a single-server model says nothing about them.
    """
    util = lock_utilization(run)
    util = util[util["mode"].isin(modes)]
    lowest = level_summary(run).groupby(["engine", "schema"])["concurrency"].min()
    cores = cpu_count(run)
    rows = []
    for (engine, schema, lock, mode), group in util.groupby(["engine", "schema", "lock", "mode"], sort=True):
        base_c = lowest.get((engine, schema))
        base = group[group["concurrency"] == base_c]
        if base.empty:
            continue  # not held at the lowest level (a one-off, e.g. a merge): nothing to forecast from
        if mode == "exclusive" and base["ceiling_qps"].isna().all():
            continue  # taken by under 1% of the queries: the same rule as the ceiling, no forecast either
        h = float(base["hold_us_per_query"].iloc[0])
        w0 = float(base["wait_us_per_query"].iloc[0])
        w0 = 0.0 if np.isnan(w0) else w0  # an engine without a wait counter: forecast from the hold alone
        for _, level in group.sort_values("concurrency").iterrows():
            c, x = int(level["concurrency"]), float(level["throughput_qps"])
            measured = float(level["wait_us_per_query"])
            forecast = float(forecast_wait_us(h, x, concurrency=c, baseline_us=w0, model=model))
            rows.append({
                "engine": engine, "schema": schema, "lock": lock, "mode": mode, "model": model,
                "base_concurrency": int(base_c), "base_hold_us": h, "base_wait_us": w0,
                "concurrency": c, "throughput_qps": x, "utilization": x * h / 1e6,
                "forecast_wait_us": forecast, "measured_wait_us": measured,
                "measured_hold_us": float(level["hold_us_per_query"]),
                "relative_error": (forecast - measured) / measured if measured > 0 else np.nan,
                "note": _note(c, h, float(level["hold_us_per_query"]), cores),
            })
    return pd.DataFrame(rows, columns=_FORECAST_COLUMNS)


def forecast_vs_measured(run: Run, model: str = "md1") -> pd.DataFrame:
    """The forecast check: only the levels above the base level, where the forecast is a prediction."""
    frame = wait_forecast(run, model=model)
    return frame[frame["concurrency"] > frame["base_concurrency"]].reset_index(drop=True)


def no_forecast_reason(run: Run) -> str:
    """Why :func:`forecast_vs_measured` is empty, in one sentence ('' when it is not)."""
    if not forecast_vs_measured(run).empty:
        return ""
    reason = no_ceiling_reason(run)
    if reason:
        return reason.removesuffix(".") + ", and the queueing forecast has nothing to start from."
    if wait_forecast(run).empty:
        return ("No exclusive lock with a ceiling was held at the lowest concurrency level, so the queueing "
                "forecast has nothing to start from.")
    return "Only the lowest concurrency level held the lock, so there is no higher level to check a forecast against."


def cpu_count(run: Run) -> int | None:
    counts = [m.cpu_count for m in run.manifests]
    counts = [c for c in counts if c]
    return min(counts) if counts else None


def _note(concurrency: int, base_hold: float, hold: float, cores: int | None) -> str:
    """Say when the forecast's assumptions visibly broke at this level."""
    notes = []
    if hold > HOLD_GROWTH * base_hold:
        notes.append(f"the hold grew {hold / base_hold:.1f}× over the base level")
    if cores and concurrency > cores:
        notes.append(f"{concurrency} workers on {cores} cores: lock holders get descheduled")
    return "; ".join(notes)
