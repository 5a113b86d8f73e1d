"""A release sweep read along the releases: each metric by release, and the first release where it moved.

A sweep is one interleaved run of a scenario on several ClickHouse releases, given oldest
first (``--engine all`` or ``--engine 25.8..26.9``). Each release's value is the level's own
number, as the summary prints it, with a 95% interval from resampling its windows. Where a
metric moved is decided by the A/B test between neighbouring releases
(:func:`lockprof.analysis.ab.compare_steps`), so "first changed at" means what a change means in
``lockprof compare``, and a step that is only ``inconclusive`` is never read as "unchanged".
A release whose engine lacks a counter shows n/a, never zero.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lockprof.analysis.ab import (
    CALLED,
    CPU_METRIC,
    LOCK_METRICS,
    NEGLIGIBLE_COUNT,
    NEGLIGIBLE_US,
    Comparison,
    compare_steps,
    lock_windows,
)
from lockprof.analysis.accounting import ON_CPU, WINDOW, window_totals
from lockprof.analysis.load import Run
from lockprof.analysis.memo import per_run

RESAMPLES = 500
SEED = 2026
METRIC_TEXT = {"latency_ms": "median latency (ms)", "throughput_qps": "throughput (queries/s)",
               CPU_METRIC: "on-CPU time per query (ms)", "lock_wait_us_per_query": "wait per query (µs)",
               "lock_hold_us_per_query": "hold per query (µs)",
               "lock_acquisitions_per_query": "acquisitions per query"}  # fmt: skip
POINT = ["schema", "concurrency", "query_name", "metric", "lock", "mode"]


def metric_text(metric: str, lock: str = "", mode: str = "") -> str:
    """A metric as a reader says it: 'exclusive parts lock: acquisitions per query'."""
    text = METRIC_TEXT.get(metric, metric)
    return f"{mode} {lock} lock: {text}".strip() if lock else text


@per_run
def release_values(run: Run) -> pd.DataFrame:
    """Per engine (in the run's order), level and metric: the level's value and a 95% interval from resampling
    its windows (``ci_low``/``ci_high``; NaN with fewer than 3 windows). Lock metrics an engine's catalog
    lacks have no row: n/a."""
    rng = np.random.default_rng(SEED)
    rows = [*_latency(run, rng), *_ratios(_ratio_windows(run), rng)]
    order = {label: k for k, label in enumerate(engine_order(run))}
    out = pd.DataFrame(rows, columns=["engine", *POINT, "value", "ci_low", "ci_high", "windows"])
    # A lock no release spent time on here (under a microsecond, or 0.01 acquisitions, per query) gets no row, as
    # in the A/B comparison.
    floor = np.where(out["metric"] == LOCK_METRICS["count"], NEGLIGIBLE_COUNT, NEGLIGIBLE_US)
    spent = (out["lock"] == "") | (out["value"] >= floor)
    out = out[out.assign(spent=spent).groupby(POINT)["spent"].transform("any")]
    out["order"] = out["engine"].map(order)
    return out.sort_values(["schema", "concurrency", "metric", "lock", "mode", "query_name", "order"],
                           ignore_index=True).drop(columns="order")  # fmt: skip


def engine_order(run: Run) -> list[str]:
    """The engines as the run was given them (a sweep: oldest release first), those that measured something."""
    measured = set(run.levels["engine"])
    given = [e["label"] for m in run.manifests for e in m.engines]
    return [label for label in dict.fromkeys(given) if label in measured]


def first_changes(run: Run, steps: Comparison | None = None) -> pd.DataFrame:
    """Per level and metric: the first release where it changed beyond its interval (``direction`` the verdict),
    or where a counter earlier releases lack is first counted (``counted``), and one sentence saying so (or that
    no step showed a change, and how many steps could not tell)."""
    steps = steps if steps is not None else compare_steps(run)
    values = release_values(run)
    labels = engine_order(run)
    rows = []
    frame = steps.frame.fillna({"lock": "", "mode": "", "query_name": ""})
    for key, group in frame.groupby(POINT, sort=True):
        point = dict(zip(POINT, key, strict=True))
        group = group.assign(step=group["engine_b"].map({label: k for k, label in enumerate(labels)}))
        group = group.sort_values("step")
        mine = values.merge(pd.DataFrame([point]), on=POINT)
        rows.append({**point, **_first(point, group, mine, labels)})
    return pd.DataFrame(rows, columns=[*POINT, "first_changed", "direction", "sentence"])


def _first(point: dict, steps: pd.DataFrame, values: pd.DataFrame, labels: list[str]) -> dict:
    where = f"{point['schema']} c={point['concurrency']}" + (f" {point['query_name']}" if point["query_name"] else "")
    what = metric_text(point["metric"], point["lock"], point["mode"])
    shown = {r.engine: _value(r.value) for r in values.itertuples()}
    missing = [label for label in labels if label not in shown]
    along = ", ".join(f"{label} {shown.get(label, 'n/a')}" for label in labels)
    called = steps[steps["verdict"].isin(CALLED)]
    nonzero = dict(zip(values["engine"], values["value"], strict=True))
    counted = [label for before, label in zip(labels, labels[1:], strict=False)
               if before not in shown and label in shown and nonzero.get(label, 0) > 0]
    if called.empty and counted and missing:
        # A counter a release added (the shared parts lock's, with the fix that made readers take it shared):
        # its arrival is the change, and the releases before it have no figure to compare.
        return {"first_changed": counted[0], "direction": "counted",
                "sentence": f"{where}: {what}: n/a on {', '.join(missing)} (no such counter); first counted at "
                            f"{counted[0]}: {shown[counted[0]]} ({along})."}  # fmt: skip
    if called.empty:
        open_steps = int((~steps["verdict"].isin({"unchanged"})).sum())
        doubt = (f"; {open_steps} of {len(steps)} steps could not tell (inconclusive or not comparable), so it is "
                 "not shown unchanged either") if open_steps else "; every step was shown unchanged"  # fmt: skip
        return {"first_changed": "", "direction": "",
                "sentence": f"{where}: {what}: no release changed it beyond its interval ({along}){doubt}."}
    first = called.iloc[0]
    ratio = (f"{first['ratio']:.2f}× (95% CI {first['ci_low']:.2f}–{first['ci_high']:.2f})"
             if pd.notna(first["ci_low"]) else f"{first['ratio']:.2f}×, every window the same way")
    na = f"; n/a (no such counter) on {', '.join(missing)}" if missing else ""
    return {"first_changed": first["engine_b"], "direction": first["verdict"],
            "sentence": f"{where}: {what} first changed at {first['engine_b']}: {first['verdict']}, "
                        f"{shown.get(first['engine_a'], 'n/a')} on {first['engine_a']} → "
                        f"{shown.get(first['engine_b'], 'n/a')}, {ratio} ({along}){na}."}  # fmt: skip


def _value(v: float) -> str:
    return "0" if v == 0 else f"{v:.3g}" if abs(v) < 100 else f"{v:,.0f}"


def _latency(run: Run, rng: np.random.Generator) -> list[dict]:
    """The median latency of a level's queries, resampling whole windows (queries close in time move together)."""
    q = run.measured()
    q = q[q["error"].isna()]
    rows = []
    for (engine, schema, conc, name), g in q.groupby(["engine", "schema", "concurrency", "query_name"]):
        windows = [w.to_numpy(dtype=float) for _, w in g.groupby("repetition")["latency_ms"]]
        low = high = float("nan")
        if len(windows) >= 3:
            picks = rng.integers(0, len(windows), (RESAMPLES, len(windows)))
            medians = [np.median(np.concatenate([windows[i] for i in pick])) for pick in picks]
            low, high = np.percentile(medians, [2.5, 97.5])
        rows.append({"engine": engine, "schema": schema, "concurrency": int(conc), "query_name": name,
                     "metric": "latency_ms", "lock": "", "mode": "", "value": float(g["latency_ms"].median()),
                     "ci_low": float(low), "ci_high": float(high), "windows": len(windows)})  # fmt: skip
    return rows


def _ratio_windows(run: Run) -> pd.DataFrame:
    """Per window: numerator and denominator of each ratio metric (throughput, CPU and each lock per query)."""
    levels = run.levels.drop_duplicates(WINDOW)
    frames = [levels.assign(metric="throughput_qps", lock="", mode="", num=levels["queries"],
                            den=levels["measure_end_s"] - levels["measure_start_s"])]  # fmt: skip
    totals = window_totals(run)
    cpu = totals[totals["event"] == ON_CPU]
    if not cpu.empty:
        frames.append(cpu.assign(metric=CPU_METRIC, lock="", mode="", num=cpu["total"] / 1000.0, den=cpu["queries"]))
    locks = lock_windows(run)
    if not locks.empty:
        metric = locks["role"].map(LOCK_METRICS)
        frames.append(locks.assign(metric=metric, num=locks["total"], den=locks["queries"]))
    cols = [*WINDOW, "metric", "lock", "mode", "num", "den"]
    return pd.concat([f[cols] for f in frames], ignore_index=True)


def _ratios(windows: pd.DataFrame, rng: np.random.Generator) -> list[dict]:
    """sum(num) / sum(den) over a level's windows, as the summary computes it, and its window-resampled interval."""
    rows = []
    for (engine, schema, conc, metric, lock, mode), g in windows.groupby(
            ["engine", "schema", "concurrency", "metric", "lock", "mode"]):  # fmt: skip
        num, den = g["num"].to_numpy(dtype=float), g["den"].to_numpy(dtype=float)
        value = float(num.sum() / den.sum()) if den.sum() > 0 else float("nan")
        low = high = float("nan")
        if len(g) >= 3:
            weights = rng.multinomial(len(g), np.full(len(g), 1.0 / len(g)), RESAMPLES)
            with np.errstate(divide="ignore", invalid="ignore"):
                stats = (weights @ num) / (weights @ den)
            low, high = np.nanpercentile(stats, [2.5, 97.5])
        rows.append({"engine": engine, "schema": schema, "concurrency": int(conc), "query_name": "", "metric": metric,
                     "lock": lock, "mode": mode, "value": value, "ci_low": float(low), "ci_high": float(high),
                     "windows": len(g)})  # fmt: skip
    return rows
