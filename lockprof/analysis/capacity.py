"""A capacity forecast: throughput against core count, and the core count from which an exclusive lock caps it.

A small machine saturates its cores long before an exclusive lock saturates, so a run there says "CPU" however the
lock will behave on a production replica. The numbers for the bigger machine are in the run already; this module
puts them together, per engine and schema:

* **The CPU line.** A query costs ``c`` seconds of CPU (on-CPU time summed over its threads, at the highest
  concurrency level that measured a rate). The engine had ``P`` cores (the run's ``cpus`` option when its workers
  were pinned, else the host's, less the share of the machine other processes used in those windows) and ran ``C``
  workers at that level; with throughput ``X`` there, the parallel efficiency is ``e = X · c / min(C, P)``, capped
  at 1: the share of the cores the queries kept busy with their own work. On ``N`` cores the engine then serves
  ``N · e / c`` queries per second.
* **The lock ceilings.** An exclusive lock held ``h`` per query (at the lowest concurrency level, before queueing
  or descheduling inflates it; from each query's own counters where the engine keeps a query log, see
  :func:`engine_sources`) serves at most ``1 / h`` queries per second, whatever the cores
  (:func:`lockprof.analysis.utilization.ceiling_qps`). The forecast throughput is the least of the CPU line and the
  ceilings; a lock becomes the limit from ``N* = (1 / h) · c / e`` cores, where the CPU line crosses its ceiling.
* **The wait.** At ``N`` cores and ``C`` closed-loop workers (``C = N`` unless given), each lock's wait per query
  is the existing M/D/1 forecast (:func:`lockprof.analysis.utilization.forecast_wait_us`) at the forecast
  throughput, capped at ``(C − 1) · h``, plus the wait measured at the lowest level. When ``C`` is given the
  throughput is also bounded by ``C`` workers each taking the lowest level's median latency per query (Little's law;
  the median, as a busy machine's stalls inflate the mean).

Assumptions, each a way the forecast can be wrong:

1. CPU per query and the efficiency stay as measured as cores are added (no new contention on caches, memory
   bandwidth or NUMA; the measured efficiency already holds whatever the run's own cores cost). With more workers
   than cores at the highest level, waiting for a core is not work, so it does not lower ``e``.
2. A lock's hold per query does not grow with cores (it does with the parts count: measure at production's).
3. Only locks with a hold counter are bounded. A lock waited on whose engine counts no hold time is named, and the
   forecast says it cannot bound it: no number is made up for it.
4. Near a ceiling the real throughput bends below the least of the two lines (queueing); the line is an upper bound.

The intervals come from the run's own spread: a bootstrap over the measured windows (the repetitions of each
level), the lowest and highest levels resampled independently, ``RESAMPLES`` times with a fixed seed; the 2.5th to
97.5th percentiles. With one window per level there is no spread to resample and the interval is NaN. They hold
the noise of this run, not the difference between this machine and another.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lockprof.analysis.accounting import (
    EVENTS,
    LEVEL,
    ON_CPU,
    ON_CPU_PARTS,
    QUERY_LOG,
    WINDOW,
    lock_waits,
    window_totals,
)
from lockprof.analysis.host import BUSY_OTHER_SHARE
from lockprof.analysis.levels import level_summary
from lockprof.analysis.load import Run
from lockprof.analysis.memo import per_run
from lockprof.analysis.utilization import ceiling_qps, cpu_count, forecast_wait_us, has_ceiling

RESAMPLES = 1000
SEED = 20261205  # fixed: the same run gives the same intervals every time
MIN_WAIT_US = 1.0  # an uncounted exclusive lock is named when waited on at least this long per query
FIGURE_CORES = 64  # the forecast line is drawn to at least this many cores
MAX_OTHER_SHARE = 0.95  # at most this share of the cores is taken as used by other processes

MODEL_COLUMNS = ["engine", "schema", "cores", "cores_source", "base_concurrency", "top_concurrency",
                 "throughput_qps", "cpu_ms_per_query", "cpu_ms_low", "cpu_ms_high", "efficiency",
                 "qps_per_core", "qps_per_core_low", "qps_per_core_high", "other_cpu_share", "windows", "source"]
CEILING_COLUMNS = ["engine", "schema", "lock", "mode", "base_concurrency", "hold_us_per_query",
                   "acquisitions_per_query", "hold_us_per_acquisition", "base_wait_us", "ceiling_qps",
                   "ceiling_low_qps", "ceiling_high_qps", "crossing_cores", "crossing_low_cores", "crossing_high_cores",
                   "counted", "source"]
FORECAST_COLUMNS = ["engine", "schema", "cores", "concurrency", "cpu_ms_per_query", "efficiency", "cpu_bound_qps",
                    "lock", "hold_us_per_query", "ceiling_qps", "crossing_cores", "forecast_qps", "forecast_low_qps",
                    "forecast_high_qps", "bound", "utilization", "forecast_wait_us", "wait_share_of_latency", "source"]


@dataclass
class _Spread:
    """One engine and schema's bootstrap resamples: the CPU line's slope and each counted lock's ceiling."""

    slope: np.ndarray  # queries per second per core
    cpu_ms: np.ndarray
    ceilings: dict[str, np.ndarray] = field(default_factory=dict)


def engine_cores(run: Run, engine: str) -> tuple[int | None, str]:
    """(cores, where from) the engine ran on: the ``cpus`` its run entry records when its workers were pinned,
    else the host's core count ("host"), else (None, "unknown")."""
    for manifest in run.manifests:
        for entry in manifest.engines:
            if entry.get("label") == engine and entry.get("cpus"):
                return int(entry["cpus"]), "pinned"
    cores = cpu_count(run)
    return (cores, "host") if cores else (None, "unknown")


def available_cores(run: Run, engine: str, other_share: float | np.ndarray) -> float | np.ndarray:
    """The cores the engine had, given the share of the whole machine other processes used: the host's cores less
    that share, and no more than the cores its workers were pinned to. (Where it was pinned, the others' share of
    the whole machine does not say which cores they used; this takes the kindest case.)"""
    cores, source = engine_cores(run, engine)
    host = cpu_count(run) or cores
    left = host * (1 - np.asarray(other_share, dtype=float))
    out = np.minimum(cores, left) if source == "pinned" else left
    return out if np.ndim(out) else float(out)


def engine_sources(run: Run) -> dict[str, str]:
    """Per engine, where its counters come from here: each query's own (``query_log``) where the engine kept a
    query log, else the process-wide ``events`` deltas. Unlike the run's tables, which use one source for all
    engines so that they compare alike, the forecast takes each engine's best: an exclusive hold outside the
    queries (a system log's flush commits a part to another table) does not cap the queried table."""
    disk = run.query_events_on_disk()
    if disk is not None:
        logged = {str(e) for e in disk.distinct("engine")}
    else:
        logged = set(run.query_events["engine"].astype(str).unique()) if not run.query_events.empty else set()
    return {str(e): QUERY_LOG if str(e) in logged else EVENTS for e in run.levels["engine"].unique()}


def _by_source(run: Run, make) -> pd.DataFrame:  # noqa: ANN001
    """``make(source)``'s rows of the engines whose counters come from that source, for every source used."""
    sources = engine_sources(run)
    parts = []
    for source in sorted(set(sources.values())):
        frame = make(source)
        engines = [e for e, s in sources.items() if s == source]
        parts.append(frame[frame["engine"].astype(str).isin(engines)] if not frame.empty else frame)
    parts = [p for p in parts if not p.empty]
    return pd.concat(parts, ignore_index=True) if parts else make(EVENTS).iloc[0:0]


@per_run
def _own_totals(run: Run) -> pd.DataFrame:
    return _by_source(run, lambda source: window_totals(run, source))


@per_run
def _own_lock_waits(run: Run, keys: tuple[str, ...]) -> pd.DataFrame:
    return _by_source(run, lambda source: lock_waits(run, keys, source))


@per_run
def _base_holds(run: Run) -> pd.DataFrame:
    """Per engine, schema and exclusive lock that caps throughput (:func:`has_ceiling`) at the lowest concurrency
    level: the hold, acquisitions and wait per query there, from the engine's own source."""
    waits = _own_lock_waits(run, tuple(LEVEL))
    columns = ["engine", "schema", "lock", "base_concurrency", "hold_us_per_query", "acquisitions_per_query",
               "wait_us_per_query", "source"]
    if waits.empty:
        return pd.DataFrame(columns=columns)
    lowest = level_summary(run).groupby(["engine", "schema"], as_index=False)["concurrency"].min()
    base = waits.merge(lowest, on=["engine", "schema", "concurrency"], how="inner")
    base = base[(base["mode"] == "exclusive") & base["hold_us_per_query"].notna()]
    base = base[has_ceiling(base)].rename(columns={"concurrency": "base_concurrency"})
    return base[columns].reset_index(drop=True)


@per_run
def _window_inputs(run: Run) -> pd.DataFrame:
    """Per measured window: the driver's queries and window length (throughput), the counted queries and their
    summed on-CPU time (µs)."""
    levels = run.levels.copy()
    levels["window_s"] = (levels["measure_end_s"] - levels["measure_start_s"]).clip(lower=0)
    other = pd.to_numeric(levels["host_other_cpu_share"], errors="coerce") if "host_other_cpu_share" in levels \
        else pd.Series(np.nan, index=levels.index)
    levels["other_share"] = other.clip(lower=0.0, upper=MAX_OTHER_SHARE)
    levels = levels.groupby(WINDOW, as_index=False).agg(done=("queries", "sum"), window_s=("window_s", "sum"),
                                                        other_share=("other_share", "mean"))
    totals = _own_totals(run)
    if totals.empty:
        return levels.assign(counted=np.nan, cpu_us=np.nan)
    counted = totals.drop_duplicates(WINDOW).set_index(WINDOW)["queries"].rename("counted")
    wide = totals.pivot_table(index=WINDOW, columns="event", values="total", aggfunc="sum")
    # OSCPUVirtualTime where the engine counts it, else user + system time (as the time accounting does)
    parts = [wide[p] for p in ON_CPU_PARTS if p in wide]
    cpu = sum(p.fillna(0.0) for p in parts).where(pd.concat(parts, axis=1).notna().any(axis=1)) if parts \
        else pd.Series(np.nan, index=wide.index)
    if ON_CPU in wide:
        cpu = wide[ON_CPU].where(wide[ON_CPU].notna(), cpu)
    inputs = pd.concat([counted, cpu.rename("cpu_us")], axis=1).reset_index()
    return levels.merge(inputs, on=WINDOW, how="left")


def _top_levels(run: Run) -> dict[tuple[str, str], int]:
    """Per engine and schema: the highest concurrency level that measured a throughput (not "too few" queries,
    which is no rate), else the highest."""
    out = {}
    for (engine, schema), levels in level_summary(run).groupby(["engine", "schema"], sort=True):
        measured = levels[~levels["too_few"].astype(bool) & (levels["throughput_qps"] > 0)]
        out[(engine, schema)] = int((measured if not measured.empty else levels)["concurrency"].max())
    return out


@per_run
def capacity_model(run: Run) -> pd.DataFrame:
    """Per engine and schema: the cores it had, CPU per query and efficiency at the highest concurrency level
    that measured a throughput (not "too few" queries), and the CPU line's slope (queries per second per core),
    with bootstrap intervals (see the module). ``other_cpu_share`` is the share of the machine other processes
    used meanwhile: the cores the engine had are the cores less that share."""
    inputs = _window_inputs(run)
    summary = level_summary(run)
    rows = []
    tops = _top_levels(run)
    for (engine, schema), levels in summary.groupby(["engine", "schema"], sort=True):
        top = levels[levels["concurrency"] == tops[(engine, schema)]].iloc[0]
        cores, source = engine_cores(run, str(engine))
        windows = inputs[(inputs["engine"] == engine) & (inputs["schema"] == schema)
                         & (inputs["concurrency"] == top["concurrency"])]
        x = float(top["throughput_qps"])
        cpu_ms = float(windows["cpu_us"].sum(min_count=1) / windows["counted"].sum() / 1000.0) \
            if windows["counted"].sum() > 0 else np.nan
        other = float(windows["other_share"].mean()) if windows["other_share"].notna().any() else 0.0
        used = min(int(top["concurrency"]), available_cores(run, str(engine), other)) if cores else np.nan
        efficiency = min(1.0, x * cpu_ms / 1000.0 / used) if cpu_ms > 0 and used > 0 else np.nan
        spread = _spread(run).get((engine, schema))
        slope_lo, slope_hi = _interval(spread.slope if spread else None)
        cpu_lo, cpu_hi = _interval(spread.cpu_ms if spread else None)
        rows.append({"engine": engine, "schema": schema, "cores": cores, "cores_source": source,
                     "base_concurrency": int(levels["concurrency"].min()), "top_concurrency": int(top["concurrency"]),
                     "throughput_qps": x, "cpu_ms_per_query": cpu_ms, "cpu_ms_low": cpu_lo, "cpu_ms_high": cpu_hi,
                     "efficiency": efficiency, "qps_per_core": efficiency / cpu_ms * 1000.0 if cpu_ms > 0 else np.nan,
                     "qps_per_core_low": slope_lo, "qps_per_core_high": slope_hi, "other_cpu_share": other,
                     "windows": len(windows), "source": engine_sources(run).get(str(engine), EVENTS)})
    return pd.DataFrame(rows, columns=MODEL_COLUMNS)


@per_run
def capacity_ceilings(run: Run) -> pd.DataFrame:
    """Per engine, schema and exclusive lock the queries take (at least 1% of them, :func:`has_ceiling`) at the
    lowest concurrency level: the hold there (per query, per acquisition, acquisitions per query), the ceiling
    1/h and the core count where the CPU line crosses it, with intervals; ``source`` says which counters (see
    :func:`engine_sources`). Exclusive locks waited on without a hold counter on that engine are rows too, with
    ``counted`` False and NaN numbers: the forecast cannot bound them."""
    model = capacity_model(run).set_index(["engine", "schema"])
    rows = []
    for _, c in _base_holds(run).iterrows():
        key = (c["engine"], c["schema"])
        slope = model.at[key, "qps_per_core"] if key in model.index else np.nan
        h, n = float(c["hold_us_per_query"]), float(c["acquisitions_per_query"])
        spread = _spread(run).get(key)
        resampled = spread.ceilings.get(c["lock"]) if spread else None
        ceil_lo, ceil_hi = _interval(resampled)
        cross_lo, cross_hi = _interval(resampled / spread.slope if resampled is not None else None)
        wait = float(c["wait_us_per_query"])
        ceiling = float(ceiling_qps(h))
        rows.append({"engine": c["engine"], "schema": c["schema"], "lock": c["lock"], "mode": "exclusive",
                     "base_concurrency": int(c["base_concurrency"]), "hold_us_per_query": h,
                     "acquisitions_per_query": n, "hold_us_per_acquisition": h / n if n > 0 else np.nan,
                     "base_wait_us": 0.0 if np.isnan(wait) else wait, "ceiling_qps": ceiling,
                     "ceiling_low_qps": ceil_lo, "ceiling_high_qps": ceil_hi,
                     "crossing_cores": ceiling / slope if slope > 0 else np.nan,
                     "crossing_low_cores": cross_lo, "crossing_high_cores": cross_hi, "counted": True,
                     "source": c["source"]})
    waits = _own_lock_waits(run, tuple(LEVEL))
    uncounted = waits[(waits["mode"] == "exclusive") & waits["hold_us_per_query"].isna()
                      & (waits["wait_us_per_query"] >= MIN_WAIT_US)] if not waits.empty else waits
    for (engine, schema, lock), group in uncounted.groupby(["engine", "schema", "lock"], sort=True):
        rows.append({"engine": engine, "schema": schema, "lock": lock, "mode": "exclusive",
                     "base_concurrency": int(group["concurrency"].min()), "hold_us_per_query": np.nan,
                     "acquisitions_per_query": float(group["acquisitions_per_query"].max()),
                     "hold_us_per_acquisition": np.nan, "base_wait_us": float(group["wait_us_per_query"].max()),
                     "ceiling_qps": np.nan, "ceiling_low_qps": np.nan, "ceiling_high_qps": np.nan,
                     "crossing_cores": np.nan, "crossing_low_cores": np.nan, "crossing_high_cores": np.nan,
                     "counted": False, "source": group["source"].iloc[0]})
    out = pd.DataFrame(rows, columns=CEILING_COLUMNS)
    out["counted"] = out["counted"].astype(bool)
    return out.sort_values(["engine", "schema", "ceiling_qps", "lock"], ignore_index=True)


def capacity_forecast(run: Run, cores: float, concurrency: int | None = None) -> pd.DataFrame:
    """The forecast at ``cores`` cores and ``concurrency`` closed-loop workers (default: one per core): one row per
    engine, schema and exclusive lock (``lock`` empty where no exclusive lock is held), with the forecast throughput,
    what bounds it ("cpu", "concurrency" or the lock), each lock's utilization and forecast wait per query."""
    if not cores > 0:
        raise ValueError(f"cores must be positive, not {cores}")
    workers = concurrency or cores
    model = capacity_model(run)
    ceilings = capacity_ceilings(run)
    latency = level_summary(run).set_index(["engine", "schema", "concurrency"])["p50_ms"]
    rows = []
    for _, m in model.iterrows():
        key = (m["engine"], m["schema"])
        locks = ceilings[(ceilings["engine"] == m["engine"]) & (ceilings["schema"] == m["schema"])]
        counted = locks[locks["counted"]]
        cpu_bound = cores * m["qps_per_core"]
        bounds = {"cpu": cpu_bound}
        base_latency_ms = latency.get((m["engine"], m["schema"], m["base_concurrency"]), np.nan)
        if concurrency and base_latency_ms > 0:
            bounds["concurrency"] = concurrency * 1000.0 / base_latency_ms
        bounds.update(zip(counted["lock"], counted["ceiling_qps"], strict=True))
        known = {k: v for k, v in bounds.items() if pd.notna(v)}
        bound = min(known, key=known.get) if known else ""
        x = known[bound] if known else np.nan
        lo, hi = _forecast_interval(_spread(run).get(key), cores, bounds.get("concurrency"))
        common = {"engine": m["engine"], "schema": m["schema"], "cores": cores, "concurrency": workers,
                  "cpu_ms_per_query": m["cpu_ms_per_query"], "efficiency": m["efficiency"],
                  "cpu_bound_qps": cpu_bound, "forecast_qps": x, "forecast_low_qps": lo, "forecast_high_qps": hi,
                  "bound": bound, "source": m["source"]}
        if counted.empty:  # no ceiling: a row of its own, before any lock it cannot bound
            rows.append({**common, "lock": "", "hold_us_per_query": np.nan, "ceiling_qps": np.nan,
                         "crossing_cores": np.nan, "utilization": np.nan, "forecast_wait_us": np.nan,
                         "wait_share_of_latency": np.nan})
        for _, lock in locks.iterrows():
            h = lock["hold_us_per_query"]
            wait = (float(forecast_wait_us(h, x, concurrency=workers, baseline_us=lock["base_wait_us"]))
                    if lock["counted"] and pd.notna(x) else np.nan)
            # the wait's share of a query's time: the lowest level's median latency plus the forecast wait
            rows.append({**common, "lock": lock["lock"], "hold_us_per_query": h, "ceiling_qps": lock["ceiling_qps"],
                         "crossing_cores": lock["crossing_cores"], "utilization": x * h / 1e6,
                         "forecast_wait_us": wait,
                         "wait_share_of_latency": wait / (wait + base_latency_ms * 1000.0)
                         if base_latency_ms > 0 else np.nan})
    return pd.DataFrame(rows, columns=FORECAST_COLUMNS)


def forecast_check(base: Run, measured: Run) -> pd.DataFrame:
    """Predicted against measured: the forecast from ``base`` (say, a run pinned to one core) at the cores and
    the highest concurrency ``measured`` had (say, the same scenario on two), per engine, schema and exclusive
    lock with a ceiling (``lock`` empty for the throughput alone). ``relative_error`` is (predicted − measured)
    / measured, for throughput and for each lock's wait per query; the errors are for a benchmark to print,
    since they depend on the machine."""
    rows = []
    tops = _top_levels(measured)
    summary = level_summary(measured).set_index(["engine", "schema", "concurrency"])
    waits = _own_lock_waits(measured, tuple(LEVEL))
    for (engine, schema), top_c in tops.items():
        cores, _ = engine_cores(measured, str(engine))
        if not cores:
            continue
        # the cores the measured run had: less what other processes used in its windows
        windows = _window_inputs(measured)
        windows = windows[(windows["engine"] == engine) & (windows["schema"] == schema)
                          & (windows["concurrency"] == top_c)]
        share = float(windows["other_share"].mean()) if windows["other_share"].notna().any() else 0.0
        had = float(available_cores(measured, str(engine), share))
        forecast = capacity_forecast(base, had, top_c)
        forecast = forecast[(forecast["engine"] == engine) & (forecast["schema"] == schema)]
        if forecast.empty:
            continue
        x = float(summary.at[(engine, schema, top_c), "throughput_qps"])
        predicted = float(forecast["forecast_qps"].iloc[0])
        common = {"engine": engine, "schema": schema, "cores": cores, "cores_available": had, "concurrency": top_c}
        rows.append({**common, "metric": "throughput_qps", "lock": "", "predicted": predicted, "measured": x})
        for _, lock in forecast[forecast["hold_us_per_query"].notna()].iterrows():
            at = waits[(waits["engine"] == engine) & (waits["schema"] == schema) & (waits["concurrency"] == top_c)
                       & (waits["lock"] == lock["lock"]) & (waits["mode"] == "exclusive")]
            # the wait at the load the measured run reached, so the wait's error is the queueing model's own
            wait = float(forecast_wait_us(lock["hold_us_per_query"], x, concurrency=top_c,
                                          baseline_us=_base_wait(base, engine, schema, lock["lock"])))
            rows.append({**common, "metric": "wait_us_per_query", "lock": lock["lock"], "predicted": wait,
                         "measured": float(at["wait_us_per_query"].iloc[0]) if not at.empty else np.nan})
    out = pd.DataFrame(rows, columns=["engine", "schema", "cores", "cores_available", "concurrency", "metric",
                                      "lock", "predicted", "measured"])
    out["relative_error"] = (out["predicted"] - out["measured"]) / out["measured"].where(out["measured"] > 0)
    return out


def _base_wait(run: Run, engine: str, schema: str, lock: str) -> float:
    holds = _base_holds(run)
    row = holds[(holds["engine"] == engine) & (holds["schema"] == schema) & (holds["lock"] == lock)]
    wait = float(row["wait_us_per_query"].iloc[0]) if not row.empty else 0.0
    return 0.0 if np.isnan(wait) else wait


def throughput_curve(run: Run, max_cores: int = FIGURE_CORES, min_cores: float = 1.0) -> pd.DataFrame:
    """The forecast line per engine and schema from ``min_cores`` to ``max_cores`` cores (log-spaced; fractions
    of a core are what a busy machine leaves an engine), with its interval."""
    cores = np.unique(np.concatenate([np.geomspace(min_cores, max_cores, 80), [max_cores]]))
    model = capacity_model(run)
    ceilings = capacity_ceilings(run)
    rows = []
    for _, m in model.iterrows():
        limits = ceilings.loc[(ceilings["engine"] == m["engine"]) & (ceilings["schema"] == m["schema"])
                              & ceilings["counted"], "ceiling_qps"].to_numpy(dtype=float)
        cap = limits.min() if limits.size else np.inf
        spread = _spread(run).get((m["engine"], m["schema"]))
        for n in cores:
            lo, hi = _forecast_interval(spread, float(n), None)
            rows.append({"engine": m["engine"], "schema": m["schema"], "cores": float(n),
                         "forecast_qps": min(n * m["qps_per_core"], cap), "forecast_low_qps": lo,
                         "forecast_high_qps": hi})
    return pd.DataFrame(rows, columns=["engine", "schema", "cores", "forecast_qps", "forecast_low_qps",
                                       "forecast_high_qps"])


def measured_points(run: Run) -> pd.DataFrame:
    """The throughput each window of the highest measured level reached, at the cores the engine had there
    (``effective_cores``: its cores less the share other processes used, where it was recorded): the points the
    forecast line starts from."""
    inputs = _window_inputs(run)
    tops = _top_levels(run)
    rows = []
    for (engine, schema), top_c in tops.items():
        cores, _ = engine_cores(run, str(engine))
        windows = inputs[(inputs["engine"] == engine) & (inputs["schema"] == schema)
                         & (inputs["concurrency"] == top_c) & (inputs["window_s"] > 0)]
        for _, w in windows.iterrows():
            share = 0.0 if pd.isna(w["other_share"]) else float(w["other_share"])
            rows.append({"engine": engine, "schema": schema, "concurrency": top_c, "repetition": w["repetition"],
                         "cores": cores,
                         "effective_cores": available_cores(run, str(engine), share) if cores else np.nan,
                         "throughput_qps": w["done"] / w["window_s"]})
    return pd.DataFrame(rows, columns=["engine", "schema", "concurrency", "repetition", "cores", "effective_cores",
                                       "throughput_qps"])


def capacity_sentences(run: Run, cores: int, concurrency: int | None = None) -> list[str]:
    """With two or more engines, first the difference at ``cores`` per schema; then one sentence per engine and
    schema (where its throughput goes as cores are added, and what bounds it at ``cores``) and one naming the
    exclusive locks it waited on but cannot bound."""
    model = capacity_model(run)
    ceilings = capacity_ceilings(run)
    forecast = capacity_forecast(run, cores, concurrency)
    several = model["engine"].nunique() > 1
    # the answer to an A/B first: the engines side by side at the requested cores
    out = _difference_sentences(ceilings, forecast, cores) if several else []
    for _, m in model.iterrows():
        name = f"{m['engine']} / {m['schema']}" if several else str(m["schema"])
        locks = ceilings[(ceilings["engine"] == m["engine"]) & (ceilings["schema"] == m["schema"])]
        out.append(f"{name}: {_engine_sentence(m, locks[locks['counted']], cores)}")
        uncounted = locks[~locks["counted"]].sort_values("base_wait_us", ascending=False)
        if not uncounted.empty:
            names = _join([_lock_name(lock).removesuffix(" lock") for lock in uncounted["lock"]])
            waits = _join([f"{w:,.0f}" for w in uncounted["base_wait_us"]])
            plural = len(uncounted) > 1
            out.append(f"{name}: the forecast cannot bound the {names} lock{'s' if plural else ''} (exclusive, waited "
                       f"on up to {waits} µs per query): {m['engine']} counts no hold time for "
                       f"{'them' if plural else 'it'}, so {'any of them' if plural else 'it'} may cap throughput "
                       "below these figures.")
        row = forecast[(forecast["engine"] == m["engine"]) & (forecast["schema"] == m["schema"])].iloc[0]
        if concurrency and row["bound"] == "concurrency":
            out.append(f"{name}: with {concurrency} workers, at most ~{_qps(row['forecast_qps'])} q/s: each takes "
                       "the lowest level's median latency per query, so more cores than workers go unused.")
    return out


def _engine_sentence(m: pd.Series, locks: pd.DataFrame, cores: int) -> str:
    if pd.isna(m["qps_per_core"]):
        if locks.empty:
            return "no CPU time per query was counted, so no forecast can be made."
        first = locks.iloc[0]
        return (f"no CPU time per query was counted, so the core count at which it is lock-bound is unknown; the "
                f"{_lock_name(first['lock'])} ({_hold_text(first)}) caps it at ~{_qps(first['ceiling_qps'])} q/s "
                "on any number of cores.")
    cpu_span = _interval_text(cores * m["qps_per_core_low"], cores * m["qps_per_core_high"])
    cpu_bound = f"CPU-bound at ~{_qps(cores * m['qps_per_core'])} q/s{cpu_span}"
    if locks.empty:
        return (f"not lock-bound up to {cores} cores (no exclusive lock the queries take has a ceiling): "
                f"{cpu_bound}. {_cpu_text(m)}")
    first = locks.iloc[0]  # the lowest ceiling: the first to bind
    crossing = first["crossing_cores"]
    span = _interval_text(first["crossing_low_cores"], first["crossing_high_cores"], cores=True)
    ceiling_span = _interval_text(first["ceiling_low_qps"], first["ceiling_high_qps"])
    ceiling = (f"the {_lock_name(first['lock'])} ({_hold_text(first)}) caps this query at "
               f"~{_qps(first['ceiling_qps'])} q/s{ceiling_span}")
    source = (f" The hold is from process-wide counters ({m['engine']} keeps no query log): holds outside the "
              "queries count too, so the ceiling may be low." if first["source"] == EVENTS else "")
    if crossing <= cores:
        return f"on {_cores(crossing)} cores or more{span}, {ceiling}.{source} {_cpu_text(m)}"
    return f"not lock-bound up to {cores} cores: {cpu_bound}; from {_cores(crossing)} cores{span}, {ceiling}." \
        f"{source} {_cpu_text(m)}"


def _difference_sentences(ceilings: pd.DataFrame, forecast: pd.DataFrame, cores: int) -> list[str]:
    out = []
    for schema, rows in forecast.drop_duplicates(["engine", "schema"]).groupby("schema", sort=True):
        if len(rows) < 2:
            continue
        parts = []
        for _, r in rows.iterrows():
            if r["bound"] in ("cpu", ""):
                limit = ceilings[(ceilings["engine"] == r["engine"]) & (ceilings["schema"] == schema)
                                 & ceilings["counted"]]
                what = "not lock-bound" if limit.empty or limit["crossing_cores"].min() > cores else "lock-bound"
                parts.append(f"{r['engine']} is {what} (CPU-bound at ~{_qps(r['forecast_qps'])} q/s)")
            elif r["bound"] == "concurrency":
                parts.append(f"{r['engine']} is bound by its workers at ~{_qps(r['forecast_qps'])} q/s")
            else:
                parts.append(f"{r['engine']} is capped at ~{_qps(r['forecast_qps'])} q/s by the "
                             f"{_lock_name(r['bound'])} (exclusive)")
        out.append(f"{schema}: at {cores} cores " + "; ".join(parts) + ".")
    return out


def _spread_inputs(run: Run) -> pd.DataFrame:
    """Per window: the summed exclusive hold (µs) of each lock with a ceiling, beside the window's inputs."""
    holds = _base_holds(run)
    per_window = _own_lock_waits(run, tuple(WINDOW))
    if holds.empty or per_window.empty:
        return pd.DataFrame(columns=[*WINDOW, "lock", "hold_total_us"])
    per_window = per_window[(per_window["mode"] == "exclusive") & per_window["lock"].isin(holds["lock"])]
    per_window = per_window.merge(_window_inputs(run), on=WINDOW)
    per_window["hold_total_us"] = per_window["hold_us_per_query"] * per_window["counted"]
    return per_window[[*WINDOW, "lock", "hold_total_us"]]


@per_run
def _spread(run: Run) -> dict[tuple[str, str], _Spread]:
    """The bootstrap resamples per engine and schema (see the module); missing where there is one window."""
    inputs = _window_inputs(run)
    holds = _spread_inputs(run)
    model_cores = {}
    rng = np.random.default_rng(SEED)
    out: dict[tuple[str, str], _Spread] = {}
    tops = _top_levels(run)
    for (engine, schema), group in inputs.groupby(["engine", "schema"], sort=True):
        top_c = tops.get((engine, schema), group["concurrency"].max())
        top = group[group["concurrency"] == top_c]
        if len(top) < 2 or not (top["counted"].sum() > 0):
            continue
        if engine not in model_cores:
            model_cores[engine] = engine_cores(run, str(engine))[0]
        cores = model_cores[engine]
        if not cores:
            continue
        draw = rng.integers(0, len(top), size=(RESAMPLES, len(top)))
        pick = lambda column, d=draw, t=top: t[column].to_numpy(dtype=float)[d].sum(axis=1)  # noqa: E731
        cpu_ms = pick("cpu_us") / pick("counted") / 1000.0
        x = pick("done") / pick("window_s")
        share = top["other_share"].fillna(0.0).to_numpy(dtype=float)[draw].mean(axis=1)
        efficiency = np.minimum(1.0, x * cpu_ms / 1000.0 / np.minimum(int(top_c), available_cores(run, str(engine),
                                                                                                  share)))
        spread = _Spread(slope=efficiency / cpu_ms * 1000.0, cpu_ms=cpu_ms)
        bases = _base_holds(run)
        for _, c in bases[(bases["engine"] == engine) & (bases["schema"] == schema)].iterrows():
            base = group[group["concurrency"] == c["base_concurrency"]].merge(
                holds[holds["lock"] == c["lock"]], on=WINDOW, how="left").fillna({"hold_total_us": 0.0})
            if len(base) < 2:
                continue
            d = rng.integers(0, len(base), size=(RESAMPLES, len(base)))
            hold = base["hold_total_us"].to_numpy(dtype=float)[d].sum(axis=1) / \
                base["counted"].to_numpy(dtype=float)[d].sum(axis=1)
            with np.errstate(divide="ignore"):
                spread.ceilings[c["lock"]] = np.where(hold > 0, 1e6 / hold, np.inf)
        out[(engine, schema)] = spread
    return out


def _forecast_interval(spread: _Spread | None, cores: float, concurrency_bound: float | None) -> tuple[float, float]:
    if spread is None:
        return np.nan, np.nan
    x = cores * spread.slope
    for ceiling in spread.ceilings.values():
        x = np.minimum(x, ceiling)
    if concurrency_bound is not None and pd.notna(concurrency_bound):
        x = np.minimum(x, concurrency_bound)
    return _interval(x)


def _interval(values: np.ndarray | None) -> tuple[float, float]:
    if values is None:
        return np.nan, np.nan
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return np.nan, np.nan
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def _lock_name(lock: str) -> str:
    return f"{str(lock).replace('_', ' ')} lock"


def _hold_text(lock: pd.Series) -> str:
    """'exclusive, 2.4 ms per query' and, where acquisitions are counted and not one per query, how they add up."""
    text = f"exclusive, {_duration(lock['hold_us_per_query'])} per query"
    n = lock["acquisitions_per_query"]
    if pd.notna(n) and n > 0 and not math.isclose(n, 1.0, rel_tol=0.05):
        text += f": {n:.2g} acquisitions of {_duration(lock['hold_us_per_acquisition'])}"
    return text


def _cpu_text(m: pd.Series) -> str:
    """How the CPU line was made, as a sentence."""
    span = (f" (95% interval {_duration(m['cpu_ms_low'] * 1000)}–{_duration(m['cpu_ms_high'] * 1000)})"
            if pd.notna(m["cpu_ms_low"]) and pd.notna(m["cpu_ms_high"]) else "")
    pinned = "pinned " if m["cores_source"] == "pinned" else ""
    busy = (f", less the {m['other_cpu_share']:.0%} other processes used" if m["other_cpu_share"] >= BUSY_OTHER_SHARE
            else "")
    cpu = _duration(m["cpu_ms_per_query"] * 1000)
    return (f"The CPU line: {cpu} of CPU per query{span} at {m['efficiency']:.0%} parallel efficiency (measured at "
            f"concurrency {m['top_concurrency']} on {m['cores']} {pinned}cores{busy}), "
            f"~{m['qps_per_core']:.3g} q/s per core.")


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _duration(us: float) -> str:
    """2 362 µs as '2.4 ms', 280 as '280 µs', 4.5 as '4.5 µs'."""
    if us >= 1000:
        if us >= 1_000_000:
            return f"{us / 1e6:.2g} s"
        return f"{us / 1000:.2g} ms" if us < 10_000 else f"{us / 1000:,.0f} ms"
    return f"{us:.0f} µs" if us >= 10 else f"{us:.2g} µs"


def _qps(value: float) -> str:
    """Two significant figures, as a forecast deserves (420, 1 100, 17)."""
    if not np.isfinite(value):
        return "∞"
    if value >= 100:
        return f"{float(f'{value:.2g}'):,.0f}"
    return f"{value:.2g}"


def _cores(value: float) -> str:
    return f"{math.ceil(value):,}" if np.isfinite(value) else "∞"


def _interval_text(low: float, high: float, cores: bool = False) -> str:
    if pd.isna(low) or pd.isna(high):
        return ""
    fmt = _cores if cores else _qps
    return f" (95% interval {fmt(low)}–{fmt(high)})"
