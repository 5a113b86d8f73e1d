"""A/B statistics: per point, did engine B get faster or slower than engine A, and can we tell?

The unit of replication is the measurement window (engine x schema x concurrency x
repetition). Queries inside one window share its conditions (the load of the machine
in those seconds, the engine's caches), so they are not independent replicates: a test
on single queries calls changes that are window-to-window noise. Each repetition runs
every engine's window back to back, in an order that turns from one repetition to the
next (A B, B A, ...), so per repetition r the log ratio ``d_r = log(B_r / A_r)`` of the
two windows' values is one paired, drift-free replicate of the engine effect.

The engine effect is the Hodges-Lehmann estimate of ``d_r`` (the median of the pairwise
means of the ``d_r``), with the exact Wilcoxon signed-rank 95% interval: both rest only on
the ``d_r`` being symmetric around the effect, which the turned order gives an A/A run,
so a load spike that slows one window threefold moves neither much, and the
false-positive rate stays at most 5% whatever the shape of the machine's noise. The
threshold is the distance from the estimate to the interval's end nearest no change: a
change is real only if its estimate is beyond ``MIN_CHANGE`` and beats that threshold
(ClickHouse's rule); ``unstable`` when the threshold is above ``UNSTABLE_THRESHOLD``; ``too_few_repetitions`` below
``MIN_REPETITIONS`` paired windows, the fewest with which the signed-rank test can reject
at 5% at all (with 6, every pair must agree). The order effect (how much faster or
slower the second window of a pair runs: ``d_r = effect + order * s_r``, ``s_r = +1``
when B ran second) is estimated by least squares and reported when it is material.

One comparison tests many points (every schema, concurrency and query, and every lock), and
each test alone would call one in twenty unchanged points changed. So a point's change is
called only if it stays a discovery once the comparison's other tests of the same family
(latency and throughput; CPU time; locks) are accounted for: Benjamini-Hochberg at
``FALSE_DISCOVERY_RATE`` over the signed-rank p-values (``q_value``). In an A/A run, where
every point is unchanged, that bounds the chance of any call at all by 5%; when a real
change moves many points it costs little power.

Values printed are those of the whole level, the numbers the summary prints: the median
latency of its queries, queries per second over its windows, and for a lock metric
``sum(total) / sum(queries)`` over its windows (:func:`lockprof.analysis.accounting.window_totals`).

Verdicts: latency, throughput and lock times are ``faster`` / ``slower`` (better or
worse: lower latency or lock time, higher throughput); lock acquisitions, a count, are
``more`` / ``fewer``; then ``unchanged``, ``unstable``, ``too_few_repetitions``;
``not_comparable`` when one side lacks the metric; ``error`` when computing it failed.
None of the last three is ever a change.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from lockprof.analysis.accounting import ON_CPU, WINDOW, window_totals
from lockprof.analysis.load import Run
from lockprof.errors import LockprofError

MIN_CHANGE = 0.05
UNSTABLE_THRESHOLD = 0.20
MIN_REPETITIONS = 6
FALSE_DISCOVERY_RATE = 0.05
NEGLIGIBLE_US = 1.0  # lock time per query below which a lock gets no row
NEGLIGIBLE_COUNT = 0.01

COLUMNS = [
    "schema", "concurrency", "query_name", "metric", "lock", "mode", "statistic", "source",
    "engine_a", "engine_b", "value_a", "value_b", "ratio", "change", "ci_low", "ci_high",
    "threshold", "p_value", "q_value", "order_effect", "order_ci_low", "order_ci_high", "verdict", "n_a", "n_b",
    "repetitions_a", "repetitions_b", "lower_is_better", "note",
]  # fmt: skip

LOCK_METRICS = {"wait": "lock_wait_us_per_query", "hold": "lock_hold_us_per_query",
                "count": "lock_acquisitions_per_query"}  # fmt: skip
COUNT_METRICS = {"lock_acquisitions_per_query"}
CPU_METRIC = "cpu_ms_per_query"  # on-CPU time per query (OSCPUVirtualTimeMicroseconds)
WORSE = {"slower", "more"}
CALLED = {"faster", "slower", "more", "fewer"}
FAMILIES = {"latency_ms": "latency and throughput", "throughput_qps": "latency and throughput",
            CPU_METRIC: "CPU time", **{m: "lock" for m in LOCK_METRICS.values()}}  # fmt: skip


# --- statistics on windows -------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    min_change: float = MIN_CHANGE
    unstable_threshold: float = UNSTABLE_THRESHOLD
    min_repetitions: int = MIN_REPETITIONS
    false_discovery_rate: float = FALSE_DISCOVERY_RATE
    paired_order: bool = True  # the two windows of a repetition ran back to back (one run), so their order counts


@dataclass(frozen=True)
class Windows:
    """One side's per-window values at a point: value and the window's start, by repetition."""

    value: pd.Series  # index: repetition
    start_s: pd.Series  # index: repetition; orders the two windows of a repetition

    @classmethod
    def of(cls, frame: pd.DataFrame, value: str) -> Windows:
        frame = frame.drop_duplicates("repetition").set_index("repetition")
        return cls(frame[value].astype(float), frame["measure_start_s"].astype(float))


def log_ratios(a: Windows, b: Windows) -> tuple[np.ndarray, np.ndarray]:
    """Per repetition both sides measured: log(B / A), and +1 where B's window ran after A's, else -1."""
    reps = a.value.index.intersection(b.value.index)
    va, vb = a.value[reps].to_numpy(), b.value[reps].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.log(vb) - np.log(va)
    d = np.where((va == 0) & (vb == 0), 0.0, d)  # a lock neither window took
    s = np.where(b.start_s[reps].to_numpy() > a.start_s[reps].to_numpy(), 1.0, -1.0)
    return d, s


@dataclass(frozen=True)
class Estimate:
    effect: float  # mean log ratio B / A
    half_width: float  # 95% half width, log scale
    order: float  # mean log ratio second / first window of a pair (NaN when not estimable)
    order_half_width: float
    n: int


def estimate(d: np.ndarray, s: np.ndarray) -> Estimate:
    """Least squares: the engine effect and, when both orders occur in 4+ pairs, the order effect, with t intervals."""
    n = len(d)
    nan = float("nan")
    if n < 2:
        return Estimate(float(d.mean()) if n else nan, nan, nan, nan, n)
    if len(np.unique(s)) == 2 and n >= 4:
        x = np.column_stack([np.ones(n), s])
        coef, *_ = np.linalg.lstsq(x, d, rcond=None)
        df = n - 2
        resid = d - x @ coef
        sigma2 = float(resid @ resid) / df
        se = np.sqrt(np.diag(sigma2 * np.linalg.inv(x.T @ x)))
        t = float(stats.t.ppf(0.975, df))
        return Estimate(float(coef[0]), t * float(se[0]), float(coef[1]), t * float(se[1]), n)
    sem = float(stats.sem(d)) if np.ptp(d) > 0 else 0.0
    return Estimate(float(d.mean()), float(stats.t.ppf(0.975, n - 1)) * sem, nan, nan, n)


def signed_rank_interval(d: np.ndarray, alpha: float = 0.05) -> tuple[float, float, float] | None:
    """Hodges-Lehmann estimate of d's centre and its exact Wilcoxon signed-rank interval; None when n is too small
    for any interval at this level. Interval ends are order statistics of the Walsh averages (d_i + d_j) / 2."""
    n = len(d)
    counts = np.ones(1)
    for i in range(1, n + 1):  # null distribution of the signed-rank statistic: the polynomial prod (1 + x^i)
        counts = np.concatenate([counts, np.zeros(i)]) + np.concatenate([np.zeros(i), counts])
    below = np.flatnonzero(np.cumsum(counts) / 2.0**n <= alpha / 2)
    if below.size == 0:
        return None
    k = int(below[-1]) + 1
    walsh = np.sort(((d[:, None] + d[None, :]) / 2.0)[np.triu_indices(n)])
    return float(np.median(walsh)), float(walsh[k - 1]), float(walsh[-k])


def signed_rank_p(d: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of d centred on 0 (exact when d has no ties or zeros)."""
    if not np.any(d != 0):
        return 1.0
    return float(stats.wilcoxon(d).pvalue)


def verdict(
    change: float,
    threshold: float,
    lower_is_better: bool,
    min_change: float = MIN_CHANGE,
    unstable_threshold: float = UNSTABLE_THRESHOLD,
    count: bool = False,
) -> str:
    """ClickHouse's rule: a change is real when its estimate is beyond ``min_change`` and its 95% interval
    excludes no change (it beats its threshold); otherwise ``unstable`` above ``unstable_threshold``, else
    ``unchanged``. The rule assumes the two sides differ only by the change: two workers of one engine must
    do the same work at the same cost, which is why each worker opens a data path holding only its run's
    datasets (see :mod:`lockprof.engines.embedded`).
    """
    if np.isnan(threshold):
        return "error"
    if np.isnan(change):
        change = 0.0
    size = abs(float(np.log1p(change))) if change > -1 else float("inf")
    if size > np.log1p(threshold) and size > np.log1p(min_change):
        if count:
            return "more" if change > 0 else "fewer"
        worse = change > 0 if lower_is_better else change < 0
        return "slower" if worse else "faster"
    return "unstable" if threshold > unstable_threshold else "unchanged"


def compare_windows(
    a: Windows, b: Windows, lower_is_better: bool, settings: Settings = Settings(), count: bool = False
) -> dict[str, Any]:
    """The interval, threshold, order effect and verdict of one metric at one point, from its windows."""
    d, s = log_ratios(a, b)
    if not settings.paired_order:
        s = np.ones_like(s)  # two runs: their clocks differ, "which ran first" means nothing
    out: dict[str, Any] = {"n_a": len(a.value), "n_b": len(b.value), "lower_is_better": lower_is_better,
                           "repetitions_a": len(a.value), "repetitions_b": len(b.value)}  # fmt: skip
    if len(d) < settings.min_repetitions:
        return {**out, "verdict": "too_few_repetitions",
                "note": f"{len(d)} paired windows; --repetitions {settings.min_repetitions} or more to judge"}
    if not np.all(np.isfinite(d)):
        # A counter that is zero in some windows and not in others: one window per sign of the doubt.
        consistent = np.all(d > 0) or np.all(d < 0)
        change = float(np.inf if np.all(d > 0) else -1.0) if consistent else float("nan")
        v = verdict(change, 0.0, lower_is_better, settings.min_change, settings.unstable_threshold, count) \
            if consistent else "unstable"
        p = 2.0 * 0.5 ** len(d) if consistent else 1.0  # the sign test: every window moved the same way
        return {**out, "verdict": v, "p_value": p, "note": "zero in some windows: no interval"}
    interval = signed_rank_interval(d)
    if interval is None:
        return {**out, "verdict": "too_few_repetitions", "note": f"{len(d)} paired windows cannot reject at 5%"}
    centre, low, high = interval
    # The threshold is how far the interval reaches from the estimate towards no change.
    threshold = float(np.expm1(centre - low if centre >= 0 else high - centre))
    order = estimate(d, s)
    return {
        **out,
        "ratio": float(np.exp(centre)),
        "change": float(np.expm1(centre)),
        "ci_low": float(np.exp(low)),
        "ci_high": float(np.exp(high)),
        "threshold": threshold,
        "p_value": signed_rank_p(d),
        "order_effect": float(np.expm1(order.order)),
        "order_ci_low": float(np.exp(order.order - order.order_half_width)),
        "order_ci_high": float(np.exp(order.order + order.order_half_width)),
        "verdict": verdict(float(np.expm1(centre)), threshold, lower_is_better, settings.min_change,
                           settings.unstable_threshold, count),
        "note": "",
    }


def material_order(row: pd.Series, settings: Settings = Settings()) -> bool:
    """An order effect whose interval excludes no effect and which is larger than the smallest change called."""
    low, high = row.get("order_ci_low"), row.get("order_ci_high")
    if pd.isna(low) or pd.isna(high):
        return False
    return (low > 1.0 or high < 1.0) and abs(row["order_effect"]) > settings.min_change


# --- windows from a run ----------------------------------------------------------------


def _windows(run: Run) -> pd.DataFrame:
    levels = run.levels.drop_duplicates(WINDOW).copy()
    levels["window_s"] = levels["measure_end_s"].astype(float) - levels["measure_start_s"].astype(float)
    levels["throughput_qps"] = levels["queries"] / levels["window_s"]
    return levels


def latency_windows(run: Run) -> pd.DataFrame:
    """Per window and query name: the median latency (ms) of its successful measured queries."""
    q = run.measured()
    q = q[q["error"].isna()]
    per = q.groupby([*WINDOW, "query_name"], as_index=False)["latency_ms"].median()
    return per.merge(_windows(run)[[*WINDOW, "measure_start_s"]], on=WINDOW)


def lock_windows(run: Run) -> pd.DataFrame:
    """Per window, lock, mode and role: the lock's total (µs, or a count) and the window's queries.

    Built on :func:`window_totals`, so sum(total) / sum(queries) over a level's windows is the
    number the summary prints. Roles an engine's catalog lacks get no row (n/a, not zero).
    """
    totals = window_totals(run)
    catalog = run.locks[["engine", "event", "lock", "mode", "role", "to_us"]].drop_duplicates(["engine", "event"])
    if totals.empty or catalog.empty:
        return pd.DataFrame(columns=[*WINDOW, "lock", "mode", "role", "total", "queries", "source"])
    rows = totals.merge(catalog, on=["engine", "event"])
    rows["total"] = np.where(rows["role"] == "count", rows["total"], rows["total"] * rows["to_us"])
    sums = rows.groupby([*WINDOW, "lock", "mode", "role"], as_index=False)["total"].sum()
    # Every window of an engine gets every (lock, mode, role) its catalog has: a counter not stored is zero.
    queries = totals.drop_duplicates(WINDOW)[[*WINDOW, "queries"]]
    have = catalog.drop_duplicates(["engine", "lock", "mode", "role"])[["engine", "lock", "mode", "role"]]
    grid = queries.merge(have, on="engine")
    out = grid.merge(sums, on=[*WINDOW, "lock", "mode", "role"], how="left").fillna({"total": 0.0})
    return out.assign(source=totals["source"].iloc[0])


# --- comparing runs --------------------------------------------------------------------


@dataclass
class Comparison:
    """The tidy frame of every tested metric, plus what a reader must know to trust it."""

    frame: pd.DataFrame
    engines: dict[str, dict[str, Any]]  # label -> manifest engine entry
    notes: list[str] = field(default_factory=list)
    partition_keys: dict[str, str] = field(default_factory=dict)


def compare(
    run_a: Run,
    run_b: Run | None = None,
    *,
    settings: Settings = Settings(),
    allow_host_mismatch: bool = False,
) -> Comparison:
    """Compare the engines of one run (first engine against each other), or the single engines of two runs."""
    run, engines, notes = _sides(run_a, run_b, allow_host_mismatch)
    settings = dataclasses.replace(settings, paired_order=settings.paired_order and run_b is None)
    labels = list(engines)
    rows: list[dict[str, Any]] = []
    for b in labels[1:]:
        rows.extend(_compare_pair(run, labels[0], b, settings))
    frame = pd.DataFrame(rows).reindex(columns=COLUMNS)
    notes.extend(control_false_discoveries(frame, settings))
    for label, entry in engines.items():
        check = entry.get("self_check") or {}
        if check.get("verdict") == "serialized":
            speedup = check.get("speedup", float("nan"))
            notes.append(
                f"engine {label} serialized queries in its self-check (speed-up {speedup:.2f}x from 1 to 2): "
                "its verdicts above concurrency 1 are marked and say nothing about locks"
            )
            flagged = frame["concurrency"].gt(1) & (frame["engine_a"].eq(label) | frame["engine_b"].eq(label))
            marked = frame.loc[flagged, "note"].fillna("") + f" {label} serializes queries"
            frame.loc[flagged, "note"] = marked.str.strip()
    notes.extend(_order_notes(frame, settings))
    if frame["verdict"].eq("too_few_repetitions").any():
        notes.append(f"fewer than {settings.min_repetitions} repetitions: too few paired windows to tell a change "
                     f"from window-to-window noise, so none is called; run with --repetitions "
                     f"{settings.min_repetitions} or more")  # fmt: skip
    return Comparison(frame, engines, notes, run.partition_keys())


def control_false_discoveries(frame: pd.DataFrame, settings: Settings = Settings()) -> list[str]:
    """Benjamini-Hochberg per engine pair and family: fill ``q_value`` and withdraw the calls whose q-value is
    above the false discovery rate (in place). Returns a note naming what was withdrawn."""
    if frame.empty:
        return []
    tested = frame["p_value"].notna() & frame["metric"].isin(FAMILIES.keys())
    family = frame["metric"].map(FAMILIES)
    withdrawn = []
    for (_, _, name), rows in frame[tested].groupby(["engine_a", "engine_b", family[tested]]):
        q = stats.false_discovery_control(rows["p_value"].astype(float).to_numpy(), method="bh")
        frame.loc[rows.index, "q_value"] = q
        drop = rows.index[rows["verdict"].isin(CALLED).to_numpy() & (q > settings.false_discovery_rate)]
        for i in drop:
            threshold = frame.at[i, "threshold"]
            unstable = pd.notna(threshold) and threshold > settings.unstable_threshold
            frame.at[i, "verdict"] = "unstable" if unstable else "unchanged"
            frame.at[i, "note"] = (f"p={frame.at[i, 'p_value']:.3f} alone, q={frame.at[i, 'q_value']:.3f} over "
                                   f"the {len(rows)} {name} tests: not a discovery")  # fmt: skip
        if len(drop):
            withdrawn.append(f"{len(drop)} of {len(rows)} {name} ({rows['engine_b'].iloc[0]})")
    if not withdrawn:
        return []
    return [f"changes significant alone but not once all the comparison's tests are counted (Benjamini-Hochberg "
            f"at {settings.false_discovery_rate:.0%}) are not called: {', '.join(withdrawn)}"]


def _order_notes(frame: pd.DataFrame, settings: Settings) -> list[str]:
    """Say where running second in a pair made a material difference (estimated, and removed from the verdict)."""
    perf = frame[frame["metric"].isin(["latency_ms", "throughput_qps"])]
    material = perf[perf.apply(material_order, axis=1, settings=settings)] if not perf.empty else perf
    if material.empty:
        return []
    where = ", ".join(f"{r.schema} c={r.concurrency} {r.metric} ×{1 + r.order_effect:.2f}"
                      for r in material.itertuples())  # fmt: skip
    return [f"order effect (second window of a pair ÷ first): {where}; the counterbalanced order keeps it out "
            "of the engine verdicts"]


def _compare_pair(run: Run, a: str, b: str, settings: Settings) -> list[dict[str, Any]]:
    levels = run.levels
    points_a = set(map(tuple, levels.loc[levels["engine"] == a, ["schema", "concurrency"]].to_numpy()))
    points_b = set(map(tuple, levels.loc[levels["engine"] == b, ["schema", "concurrency"]].to_numpy()))
    rows = []
    for schema, conc in sorted(points_a & points_b):
        base = {"schema": schema, "concurrency": int(conc), "engine_a": a, "engine_b": b, "lock": "", "mode": ""}
        for family, metric in ((_latency_rows, "latency_ms"), (_throughput_rows, "throughput_qps"),
                               (_cpu_rows, CPU_METRIC), (_lock_rows, "lock")):  # fmt: skip
            try:
                rows.extend(family(run, base, settings))
            except Exception as exc:  # an internal error must show as one, never as a verdict
                rows.append({**base, "query_name": "", "metric": metric, "verdict": "error",
                             "note": f"{type(exc).__name__}: {exc}"})  # fmt: skip
    return rows


def _at(frame: pd.DataFrame, engine: str, schema: str, conc: int) -> pd.DataFrame:
    return frame[(frame["engine"] == engine) & (frame["schema"] == schema) & (frame["concurrency"] == conc)]


def _row(base: dict[str, Any], spec: dict[str, Any], values: tuple[float, float],
         windows: tuple[Windows | None, Windows | None], lower: bool,
         settings: Settings) -> dict[str, Any]:  # fmt: skip
    value_a, value_b = values
    row = {**base, **spec, "lower_is_better": lower, "value_a": value_a, "value_b": value_b}
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = 1.0 if value_a == 0 and value_b == 0 else float(np.float64(value_b) / np.float64(value_a))
    row.update(ratio=ratio, change=ratio - 1.0)
    wa, wb = windows
    try:
        if wa is None or wb is None:
            owner = base["engine_b" if wa is None else "engine_a"]
            row.update(verdict="not_comparable", note=f"only {owner} has this metric")
        else:
            row.update(compare_windows(wa, wb, lower, settings, count=spec["metric"] in COUNT_METRICS))
    except Exception as exc:  # an internal error must show as one, never as a verdict
        row.update(verdict="error", note=f"{type(exc).__name__}: {exc}")
    return row


def _latency_rows(run: Run, base: dict[str, Any], settings: Settings) -> list[dict[str, Any]]:
    a, b, schema, conc = base["engine_a"], base["engine_b"], base["schema"], base["concurrency"]
    per = latency_windows(run)
    q = run.measured()
    q = q[q["error"].isna()]
    rows = []
    for name in sorted(set(_at(per, a, schema, conc)["query_name"]) | set(_at(per, b, schema, conc)["query_name"])):
        sides = [_at(per[per["query_name"] == name], e, schema, conc) for e in (a, b)]
        pooled = [float(_at(q[q["query_name"] == name], e, schema, conc)["latency_ms"].median()) for e in (a, b)]
        windows = tuple(Windows.of(s, "latency_ms") if not s.empty else None for s in sides)
        spec = {"query_name": name, "metric": "latency_ms", "statistic": "median", "source": "queries"}
        rows.append(_row(base, spec, (pooled[0], pooled[1]), windows, True, settings))  # type: ignore[arg-type]
    return rows


def _throughput_rows(run: Run, base: dict[str, Any], settings: Settings) -> list[dict[str, Any]]:
    a, b, schema, conc = base["engine_a"], base["engine_b"], base["schema"], base["concurrency"]
    win = _windows(run)
    sides = [_at(win, e, schema, conc) for e in (a, b)]
    values = tuple(float(s["queries"].sum() / s["window_s"].sum()) for s in sides)
    spec = {"query_name": "", "metric": "throughput_qps", "statistic": "ratio", "source": "levels"}
    return [_row(base, spec, values, tuple(Windows.of(s, "throughput_qps") for s in sides), False, settings)]  # type: ignore[arg-type]


def _cpu_rows(run: Run, base: dict[str, Any], settings: Settings) -> list[dict[str, Any]]:
    """On-CPU time per query: what a query costs the engine, which the machine's load barely moves.

    Latency and throughput on a busy machine swing with other processes' demand for the CPUs;
    a change in the work a query does shows in its CPU time with far less noise.
    """
    a, b, schema, conc = base["engine_a"], base["engine_b"], base["schema"], base["concurrency"]
    totals = window_totals(run)
    cpu = totals[totals["event"] == ON_CPU].merge(_windows(run)[[*WINDOW, "measure_start_s"]], on=WINDOW)
    if cpu.empty:
        return []
    cpu = cpu.assign(per_query=cpu["total"] / cpu["queries"] / 1000.0)
    sides = [_at(cpu, e, schema, conc) for e in (a, b)]
    values = tuple(float(p["total"].sum() / p["queries"].sum() / 1000.0) if not p.empty else float("nan")
                   for p in sides)  # fmt: skip
    windows = tuple(Windows.of(p, "per_query") if not p.empty else None for p in sides)
    spec = {"query_name": "", "metric": CPU_METRIC, "statistic": "ratio", "source": str(cpu["source"].iloc[0])}
    return [_row(base, spec, values, windows, True, settings)]  # type: ignore[arg-type]


def _lock_rows(run: Run, base: dict[str, Any], settings: Settings) -> list[dict[str, Any]]:
    a, b, schema, conc = base["engine_a"], base["engine_b"], base["schema"], base["concurrency"]
    locks = lock_windows(run)
    if locks.empty:
        return []
    starts = _windows(run)[[*WINDOW, "measure_start_s"]]
    locks = locks.merge(starts, on=WINDOW)
    locks["per_query"] = locks["total"] / locks["queries"]
    sides = [_at(locks, e, schema, conc) for e in (a, b)]
    rows = []
    keys = sorted(set().union(*(set(zip(s["lock"], s["mode"], s["role"], strict=True)) for s in sides)))
    for lock, mode, role in keys:
        parts = [s[(s["lock"] == lock) & (s["mode"] == mode) & (s["role"] == role)] for s in sides]
        values = tuple(float(p["total"].sum() / p["queries"].sum()) if not p.empty else float("nan") for p in parts)
        if _negligible(role, values):
            continue  # a lock neither engine spent time on here
        windows = tuple(Windows.of(p, "per_query") if not p.empty else None for p in parts)
        spec = {"query_name": "", "metric": LOCK_METRICS[role], "lock": lock, "mode": mode, "statistic": "ratio",
                "source": str(locks["source"].iloc[0])}  # fmt: skip
        rows.append(_row(base, spec, values, windows, True, settings))  # type: ignore[arg-type]
    return rows


def _negligible(role: str, values: tuple[float, ...]) -> bool:
    """Under a microsecond (or 0.01 acquisitions) per query on both sides: noise, not a lock worth a row."""
    floor = NEGLIGIBLE_COUNT if role == "count" else NEGLIGIBLE_US
    return not any(np.isfinite(v) and v >= floor for v in values)


def _sides(run_a: Run, run_b: Run | None, allow_host_mismatch: bool) -> tuple[Run, dict[str, dict], list[str]]:
    """One run with its engines, or two single-engine runs merged into one with distinct labels."""
    notes = [
        f"run {m['run_id']} is {m.get('status')}: {'; '.join(m.get('failures') or []) or 'no reason given'}"
        for m in run_a.manifests + (run_b.manifests if run_b else [])
        if m.get("status") != "complete"
    ]
    if run_b is None:
        engines = {e["label"]: e for e in run_a.manifest.get("engines", [])}
        measured = set(run_a.levels["engine"].unique())
        engines = {k: v for k, v in engines.items() if k in measured}
        if len(engines) < 2:
            raise LockprofError("this run measured fewer than two engines; give two runs to compare them")
        return run_a, engines, notes
    sides = []
    for run in (run_a, run_b):
        entries = run.manifest.get("engines", [])
        if len(run.manifests) != 1 or len(entries) != 1:
            labels = ", ".join(e["label"] for e in entries)
            raise LockprofError(
                f"run {run.manifest.get('run_id')}: comparing two runs needs one engine in each; "
                f"it has {len(entries)} ({labels})"
            )
        sides.append(entries[0])
    host_a, host_b = run_a.manifest.get("host", {}), run_b.manifest.get("host", {})
    differs = [k for k in ("cpu_model", "cpu_count") if host_a.get(k) != host_b.get(k)]
    if differs:
        text = ", ".join(f"{k} {host_a.get(k)!r} vs {host_b.get(k)!r}" for k in differs)
        if not allow_host_mismatch:
            raise LockprofError(f"the runs were measured on different hosts ({text}); "
                                "the comparison would measure the machines, not the engines")  # fmt: skip
        notes.append(f"different hosts ({text}): the machines differ as well as the engines")
    if run_a.manifest["scenario"].get("sha256") != run_b.manifest["scenario"].get("sha256"):
        notes.append("the runs used different scenario files")
    notes.append("two separate runs are not interleaved: drift of the machine between them counts as change")
    labels = [sides[0]["label"], sides[1]["label"]]
    if labels[0] == labels[1]:
        labels = [f"{labels[0]}@{run_a.manifest['run_id']}", f"{labels[1]}@{run_b.manifest['run_id']}"]
    merged = _merge(_relabel(run_a, sides[0]["label"], labels[0]), _relabel(run_b, sides[1]["label"], labels[1]))
    engines = {labels[0]: {**sides[0], "label": labels[0]}, labels[1]: {**sides[1], "label": labels[1]}}
    return merged, engines, notes


def _tables(run: Run) -> list[str]:
    """The frame fields of a Run, whatever tables this version of the loader has (``query_events`` apart
    while it is still in its files: see :func:`_events_on_disk`)."""
    return [f.name for f in dataclasses.fields(run)
            if not (f.name == "query_events" and run.query_events_on_disk() is not None)
            and isinstance(getattr(run, f.name), pd.DataFrame)]


def _relabel(run: Run, old: str, new: str) -> Run:
    frames: dict[str, Any] = {}
    for t in _tables(run):
        frame = getattr(run, t)
        frames[t] = frame.assign(engine=frame["engine"].replace({old: new})) if "engine" in frame else frame
    disk = run.query_events_on_disk()
    if disk is not None:
        frames["query_events"] = disk.relabeled(renames=((old, new),))
    return dataclasses.replace(run, **frames)


def _merge(a: Run, b: Run) -> Run:
    frames: dict[str, Any] = {}
    for t in _tables(a):
        parts = [f for f in (getattr(a, t), getattr(b, t)) if not f.empty]
        frames[t] = pd.concat(parts, ignore_index=True) if parts else getattr(a, t)
    on_disk = a.query_events_on_disk(), b.query_events_on_disk()
    if on_disk[0] is not None and on_disk[1] is not None:  # both still in their files: they stay there
        frames["query_events"] = on_disk[0] + on_disk[1]
    elif "query_events" not in frames:  # one side in memory: both read, as the analysis needs one frame
        parts = [f for f in (a.query_events, b.query_events) if not f.empty]
        frames["query_events"] = pd.concat(parts, ignore_index=True) if parts else a.query_events
    return dataclasses.replace(a, paths=a.paths + b.paths, manifests=a.manifests + b.manifests, **frames)


def regressions(frame: pd.DataFrame, metric: str, lock: str | None = None) -> pd.DataFrame:
    """Rows where the chosen metric got significantly worse, or could not be computed (a gate must not pass blind)."""
    rows = frame[frame["metric"] == metric]
    if lock:
        rows = rows[rows["lock"] == lock]
    return rows[rows["verdict"].isin([*WORSE, "error"])]
