"""A/B statistics: per point, did engine B get faster or slower than engine A, and can we tell?

The unit of replication is the measurement window (engine x schema x concurrency x
repetition). Queries inside one window share its conditions (the load of the machine
in those seconds, the engine's caches), so they are not independent replicates: a test
on single queries calls changes that are window-to-window noise. Each repetition runs
every engine's window back to back, in an order that turns from one repetition to the
next (A B, B A, ...), with the workers restarted in that order (:class:`lockprof.run.Swap`),
so per repetition r the log ratio ``d_r = log(B_r / A_r)`` of the two windows' values is
one paired, drift-free replicate of the engine effect plus or minus the position effect:
the worker started second, which also runs the second window, is a few percent faster or
slower than the first whatever its engine.

The engine effect is estimated with the position effect removed, both with exact
rank-based 95% intervals and p-values from one null distribution each
(:mod:`lockprof.analysis.ab_stats`): a load spike that slows one window threefold moves
neither much, and the error rates hold whatever the shape of the machine's noise. Each
point gets one of three answers:

- a change (``faster``/``slower``; ``more``/``fewer`` for acquisitions, a count) when its
  interval excludes no change and the estimate is beyond ``MIN_CHANGE``;
- ``unchanged`` only when the whole interval lies within ± ``MIN_CHANGE``: shown to be
  the same within that margin, not merely not shown to differ;
- ``inconclusive`` otherwise: the interval reaches both a change of ``MIN_CHANGE`` and
  (or) no change; more repetitions would narrow it.

``MIN_CHANGE`` (5%) is more than a convention: a whole run can lean by about 1% in either
direction (one A/A run of the main scenario: 1.009×, interval 1.002–1.017), and with
enough repetitions an interval resolves a lean that small; a change smaller than the
minimum is never called (``docs/ab-method.md``).

One comparison tests many points (every schema, concurrency and query, and every lock),
and each test alone would call one unchanged point in twenty. So a point's change is
called only if it stays a discovery once the comparison's other tests of the same
family (latency and throughput; CPU time; locks) are counted: Benjamini-Hochberg at
``FALSE_DISCOVERY_RATE`` over the p-values (``q_value``). In an A/A run, where every
point is unchanged, that bounds the chance of any call within one family by 5%; the
three families are bounded each on its own (an A/A run calls something in one of them
up to about three times as often). A gate (``compare --fail-on``) reads one family per
metric it names.

Values printed are those of the whole level, the numbers the summary prints: the median
latency of its queries, queries per second over its windows, and for a lock metric
``sum(total) / sum(queries)`` over its windows (:func:`lockprof.analysis.accounting.window_totals`).
``too_few_repetitions`` below ``MIN_REPETITIONS`` paired windows (the fewest with which
the position-corrected test can reject at 5%: 4 with each order); ``not_comparable`` when
one side lacks the metric; ``error`` when computing it failed. None of these is a change.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from lockprof.analysis.ab_stats import ALPHA, Shift, can_reject, engine_and_position, one_sample
from lockprof.analysis.accounting import ON_CPU, WINDOW, window_totals
from lockprof.analysis.load import Relabel, Run, combine
from lockprof.errors import LockprofError

MIN_CHANGE = 0.05
MIN_REPETITIONS = 8
FALSE_DISCOVERY_RATE = 0.05
NEGLIGIBLE_US = 1.0  # lock time per query below which a lock gets no row
NEGLIGIBLE_COUNT = 0.01

COLUMNS = [
    "schema", "concurrency", "query_name", "metric", "lock", "mode", "statistic", "source",
    "engine_a", "engine_b", "value_a", "value_b", "ratio", "change", "ci_low", "ci_high",
    "p_value", "q_value", "position_effect", "position_ci_low", "position_ci_high", "verdict", "n_a", "n_b",
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


def verdict(
    change: float,
    ci_low: float,
    ci_high: float,
    p_value: float,
    lower_is_better: bool,
    min_change: float = MIN_CHANGE,
    count: bool = False,
) -> str:
    """What a point's interval shows.

    A change (``faster``/``slower``, or ``more``/``fewer`` for a count) when the 95% interval
    excludes no change (p <= 5%, the same statement) and the estimate is beyond ``min_change``
    (ClickHouse's rule); ``unchanged`` only when the whole interval lies within ± ``min_change``
    (an equivalence: any change is smaller than that); otherwise ``inconclusive``: the data
    cannot tell. The rule assumes the two sides differ only by the change: two workers of one
    engine must do the same work at the same cost, which is why each worker opens a data path
    holding only its run's datasets (see :mod:`lockprof.engines.embedded`).
    """
    if np.isnan(ci_low) or np.isnan(ci_high) or np.isnan(p_value):
        return "error"
    size = abs(float(np.log1p(change))) if change > -1 else float("inf")
    if p_value <= ALPHA and size > np.log1p(min_change):
        if count:
            return "more" if change > 0 else "fewer"
        worse = change > 0 if lower_is_better else change < 0
        return "slower" if worse else "faster"
    return "unchanged" if within(ci_low, ci_high, min_change) else "inconclusive"


def within(ci_low: float, ci_high: float, min_change: float) -> bool:
    """The whole interval (ratios) lies within ± ``min_change`` of no change, symmetric on the log scale."""
    bound = float(np.log1p(min_change))
    return bool(-bound <= np.log(ci_low) and np.log(ci_high) <= bound)


def compare_windows(
    a: Windows, b: Windows, lower_is_better: bool, settings: Settings = Settings(), count: bool = False
) -> dict[str, Any]:
    """The estimate, interval, p-value, position effect and verdict of one metric at one point, from its windows.

    In one interleaved run the engine effect is estimated with the position effect removed
    (:func:`lockprof.analysis.ab_stats.engine_and_position`); two separate runs have no
    position to remove, and take the signed-rank test of the log ratios.
    """
    d, s = log_ratios(a, b)
    out: dict[str, Any] = {"n_a": len(a.value), "n_b": len(b.value), "lower_is_better": lower_is_better,
                           "repetitions_a": len(a.value), "repetitions_b": len(b.value)}  # fmt: skip
    if len(d) < settings.min_repetitions:
        return {**out, "verdict": "too_few_repetitions",
                "note": f"{len(d)} paired windows; --repetitions {settings.min_repetitions} or more to judge"}
    if not np.all(np.isfinite(d)):
        # A counter that is zero in some windows and not in others: one window per sign of the doubt.
        consistent = np.all(d > 0) or np.all(d < 0)
        p = 2.0 * 0.5 ** len(d) if consistent else 1.0  # the sign test: every window moved the same way
        if consistent and p <= ALPHA:
            change = float(np.inf if np.all(d > 0) else -1.0)
            v = verdict(change, 0.0 if change < 0 else np.inf, np.inf, p, lower_is_better, settings.min_change, count)
        else:
            v = "inconclusive"
        return {**out, "verdict": v, "p_value": p, "note": "zero in some windows: no interval"}
    engine, position = _shifts(d, s, settings)
    if not engine.has_interval:
        return {**out, "verdict": "too_few_repetitions", "note": f"{len(d)} paired windows cannot reject at 5%"}
    change = float(np.expm1(engine.estimate))
    low, high = float(np.exp(engine.low)), float(np.exp(engine.high))
    row = {**out, "ratio": float(np.exp(engine.estimate)), "change": change, "ci_low": low, "ci_high": high,
           "p_value": engine.p_value,
           "verdict": verdict(change, low, high, engine.p_value, lower_is_better, settings.min_change, count),
           "note": ""}  # fmt: skip
    if position is not None and position.has_interval:
        row.update(position_effect=float(np.expm1(position.estimate)), position_ci_low=float(np.exp(position.low)),
                   position_ci_high=float(np.exp(position.high)))  # fmt: skip
    return row


def _shifts(d: np.ndarray, s: np.ndarray, settings: Settings) -> tuple[Shift, Shift | None]:
    """The engine effect (position removed when the run alternated positions) and the position effect, or None."""
    if settings.paired_order and can_reject(int(np.sum(s > 0)), int(np.sum(s < 0))):
        return engine_and_position(d, s)
    return one_sample(d), None


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
    positions: list[str] = field(default_factory=list)  # the position effect per engine pair, always reported


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
    return _comparison(run, engines, notes, [(labels[0], b) for b in labels[1:]], settings)


def compare_steps(run: Run, *, settings: Settings = Settings()) -> Comparison:
    """Each engine of one run against the one before it, in the order the run was given them: along a release
    sweep (oldest first), each row says whether a metric moved from one release to the next."""
    run, engines, notes = _sides(run, None, allow_host_mismatch=False)
    labels = list(engines)
    return _comparison(run, engines, notes, list(zip(labels, labels[1:], strict=False)), settings)


def _comparison(run: Run, engines: dict[str, dict[str, Any]], notes: list[str], pairs: list[tuple[str, str]],
                settings: Settings) -> Comparison:  # fmt: skip
    rows: list[dict[str, Any]] = []
    for a, b in pairs:
        rows.extend(_compare_pair(run, a, b, settings))
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
    if frame["verdict"].eq("too_few_repetitions").any():
        notes.append(f"fewer than {settings.min_repetitions} repetitions: too few paired windows to tell a change "
                     f"from window-to-window noise, so none is called; run with --repetitions "
                     f"{settings.min_repetitions} or more")  # fmt: skip
    return Comparison(frame, engines, notes, run.partition_keys(), position_lines(frame))


def control_false_discoveries(frame: pd.DataFrame, settings: Settings = Settings()) -> list[str]:
    """Benjamini-Hochberg per engine pair and family: fill ``q_value`` and withdraw the calls whose q-value is
    above the false discovery rate (in place). A withdrawn call is ``unchanged`` only if its interval shows
    it, else ``inconclusive``. Returns a note naming what was withdrawn."""
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
            low, high = frame.at[i, "ci_low"], frame.at[i, "ci_high"]
            shown = pd.notna(low) and pd.notna(high) and within(low, high, settings.min_change)
            frame.at[i, "verdict"] = "unchanged" if shown else "inconclusive"
            frame.at[i, "note"] = (f"p={frame.at[i, 'p_value']:.3f} alone, q={frame.at[i, 'q_value']:.3f} over "
                                   f"the {len(rows)} {name} tests: not a discovery")  # fmt: skip
        if len(drop):
            withdrawn.append(f"{len(drop)} of {len(rows)} {name} ({rows['engine_b'].iloc[0]})")
    if not withdrawn:
        return []
    return [f"changes significant alone but not once all the comparison's tests are counted (Benjamini-Hochberg "
            f"at {settings.false_discovery_rate:.0%}) are not called: {', '.join(withdrawn)}"]


def position_lines(frame: pd.DataFrame) -> list[str]:
    """Per engine pair: the position effect on latency at each point, whatever its size, with its interval.

    The worker started second in a repetition also runs that repetition's second window, so
    the two cannot be told apart; the estimate is the ratio of that window to the first,
    whichever engine ran it, and it is removed from the engine verdicts.
    """
    rows = frame[(frame["metric"] == "latency_ms") & frame["position_effect"].notna()] if not frame.empty else frame
    out = []
    for (a, b), pair in rows.groupby(["engine_a", "engine_b"], sort=False):
        where = ", ".join(f"{r.schema} c={r.concurrency}{' ' + r.query_name if r.query_name else ''} "
                          f"×{1 + r.position_effect:.3f} ({r.position_ci_low:.3f}–{r.position_ci_high:.3f})"
                          for r in pair.itertuples())  # fmt: skip
        out.append(f"position effect, {b} vs {a} (median latency of the worker started second, which runs the "
                   f"second window of each repetition, ÷ the first; removed from the verdicts): {where}")
    return out


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
        f"run {m.run_id} is {m.status}: {'; '.join(m.failures) or 'no reason given'}"
        for m in run_a.manifests + (run_b.manifests if run_b else [])
        if not m.complete
    ]
    if run_b is None:
        engines = {e["label"]: e for e in run_a.manifest.engines}
        measured = set(run_a.levels["engine"].unique())
        engines = {k: v for k, v in engines.items() if k in measured}
        if len(engines) < 2:
            raise LockprofError("this run measured fewer than two engines; give two runs to compare them")
        return run_a, engines, notes
    sides = []
    for run in (run_a, run_b):
        entries = run.manifest.engines
        if len(run.manifests) != 1 or len(entries) != 1:
            labels = ", ".join(e["label"] for e in entries)
            raise LockprofError(
                f"run {run.manifest.run_id}: comparing two runs needs one engine in each; "
                f"it has {len(entries)} ({labels})"
            )
        sides.append(entries[0])
    m_a, m_b = run_a.manifest, run_b.manifest
    differs = [k for k in ("cpu_model", "cpu_count") if getattr(m_a, k) != getattr(m_b, k)]
    if differs:
        text = ", ".join(f"{k} {getattr(m_a, k)!r} vs {getattr(m_b, k)!r}" for k in differs)
        if not allow_host_mismatch:
            raise LockprofError(f"the runs were measured on different hosts ({text}); "
                                "the comparison would measure the machines, not the engines")  # fmt: skip
        notes.append(f"different hosts ({text}): the machines differ as well as the engines")
    if run_a.manifest.scenario_sha256 != run_b.manifest.scenario_sha256:
        notes.append("the runs used different scenario files")
    notes.append("two separate runs are not interleaved: drift of the machine between them counts as change")
    labels = [sides[0]["label"], sides[1]["label"]]
    if labels[0] == labels[1]:
        labels = [f"{labels[0]}@{run_a.manifest.run_id}", f"{labels[1]}@{run_b.manifest.run_id}"]
    merged = combine([run_a, run_b], [Relabel(renames=((side["label"], label),))
                                      for side, label in zip(sides, labels, strict=True)])
    engines = {labels[0]: {**sides[0], "label": labels[0]}, labels[1]: {**sides[1], "label": labels[1]}}
    return merged, engines, notes


def regressions(frame: pd.DataFrame, metric: str, lock: str | None = None) -> pd.DataFrame:
    """Rows where the chosen metric got significantly worse, or could not be computed (a gate must not pass blind)."""
    rows = frame[frame["metric"] == metric]
    if lock:
        rows = rows[rows["lock"] == lock]
    return rows[rows["verdict"].isin([*WORSE, "error"])]
