"""A/B statistics: per point, did engine B get faster or slower than engine A, and can we tell?

The method follows ClickHouse's performance-comparison harness. For each metric a
change is real only if its size beats both a fixed minimum (``MIN_CHANGE``) and a
randomization threshold: the 95th percentile of the change seen when the engine
labels are shuffled, i.e. the change noise alone produces. A threshold above
``UNSTABLE_THRESHOLD`` means the point is too noisy to say anything: ``unstable``.
Sizes of change are compared as |log(B / A)|, so a halving weighs as much as a
doubling and a lock time that drops by 95% can beat the noise of one that rises.

Which units are shuffled, and why:

* The unit is the smallest independent measurement a metric has: one query for
  latency and for lock figures from the query log; one time slice of the measured
  window for throughput; one sampler interval for lock figures from
  ``system.events`` deltas (engines without a query log). Shuffling whole
  repetitions instead would be the purer choice, but with the usual 1-3
  repetitions per engine it cannot reach significance at all (3 against 3 gives
  20 splits, so p >= 0.1).
* Labels are shuffled only *within* a repetition, where A and B ran back to back,
  so slow drift of the machine cannot pass for an engine effect.
* Units inside one window share that window's conditions, so unit-level shuffles
  miss noise *between* windows. Where each engine has two or more repetitions, the
  spread of its own per-repetition values is that noise, measured; it gives a
  second threshold (95% bound of the difference of two means, Student t), and the
  larger one counts. With one repetition per engine it cannot be measured and the
  frame says so in ``note``.

The bootstrap interval resamples units within each repetition of each side: it
describes unit-level noise and is shown, not used for the verdict.

Verdicts: ``faster`` / ``slower`` (better or worse for the metric: lower latency
or lock time, higher throughput), ``unchanged``, ``unstable``; ``not_comparable``
when one side lacks the metric or has too few units; ``error`` when computing it
failed. Neither of the last two is ever a change.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from lockprof.analysis.load import Run
from lockprof.errors import LockprofError

MIN_CHANGE = 0.05
UNSTABLE_THRESHOLD = 0.20
MIN_UNITS = 3
PERMUTATIONS = 1000
RESAMPLES = 1000
THROUGHPUT_SLICE_S = 0.25
NEGLIGIBLE_US = 1.0  # lock time per query below which a lock gets no row
NEGLIGIBLE_COUNT = 0.01
_BATCH = 200

COLUMNS = [
    "schema", "concurrency", "query_name", "metric", "lock", "mode", "statistic", "source",
    "engine_a", "engine_b", "value_a", "value_b", "ratio", "change", "ci_low", "ci_high",
    "perm_threshold", "window_threshold", "threshold", "verdict", "n_a", "n_b",
    "repetitions_a", "repetitions_b", "lower_is_better", "note",
]  # fmt: skip

LOCK_METRICS = {"wait": "lock_wait_us_per_query", "hold": "lock_hold_us_per_query",
                "count": "lock_acquisitions_per_query"}  # fmt: skip


# --- statistics on units ---------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One engine's units at one point: values, their repetition, and for a rate the denominators."""

    x: np.ndarray
    stratum: np.ndarray
    n: np.ndarray | None = None  # set for statistic "ratio": sum(x) / sum(n)

    @classmethod
    def of(cls, x: Any, stratum: Any, n: Any = None) -> Sample:
        return cls(
            np.asarray(x, dtype=float),
            np.asarray(stratum),
            None if n is None else np.asarray(n, dtype=float),
        )

    def __len__(self) -> int:
        return len(self.x)


def _stat(kind: str, x: np.ndarray, n: np.ndarray | None, idx: np.ndarray) -> np.ndarray:
    """The statistic of each row of an index matrix."""
    if kind == "median":
        return np.median(x[idx], axis=1)
    if kind == "mean":
        return x[idx].mean(axis=1)
    if kind == "ratio":
        assert n is not None
        with np.errstate(divide="ignore", invalid="ignore"):
            return x[idx].sum(axis=1) / n[idx].sum(axis=1)
    raise ValueError(f"unknown statistic {kind!r}")


def statistic(kind: str, s: Sample) -> float:
    return float(_stat(kind, s.x, s.n, np.arange(len(s))[None, :])[0])


def relative_change(a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    """b / a - 1; zero when both are zero, infinite when only a is."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = b / a - 1.0
    return np.where((a == 0) & (b == 0), 0.0, out)


def log_ratio(a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    """|log(b / a)|: a halving and a doubling are the same size of change, so a -95% drop
    can beat a threshold that shuffles set with +300% rises (b / a - 1 could not)."""
    with np.errstate(divide="ignore"):
        return np.abs(np.log1p(relative_change(a, b)))


def randomization_threshold(
    a: Sample, b: Sample, kind: str, rng: np.random.Generator, permutations: int = PERMUTATIONS
) -> float:
    """Relative change whose |log ratio| is the 95th percentile under labels shuffled within each repetition."""
    x = np.concatenate([a.x, b.x])
    n = None if a.n is None or b.n is None else np.concatenate([a.n, b.n])
    strata = np.concatenate([a.stratum, b.stratum])
    groups = [(np.flatnonzero(strata == s), int(np.sum(a.stratum == s))) for s in np.unique(strata)]
    changes = []
    for start in range(0, permutations, _BATCH):
        rows = min(_BATCH, permutations - start)
        parts_a, parts_b = [], []
        for pos, count_a in groups:
            shuffled = rng.permuted(np.tile(pos, (rows, 1)), axis=1)
            parts_a.append(shuffled[:, :count_a])
            parts_b.append(shuffled[:, count_a:])
        va = _stat(kind, x, n, np.concatenate(parts_a, axis=1))
        vb = _stat(kind, x, n, np.concatenate(parts_b, axis=1))
        changes.append(log_ratio(va, vb))
    # "higher" takes an observed value, never interpolates (shuffles can give infinite changes).
    return float(np.expm1(np.quantile(np.concatenate(changes), 0.95, method="higher")))


def _resampled(s: Sample, kind: str, rng: np.random.Generator, resamples: int) -> np.ndarray:
    """Bootstrap replicates of a side's statistic, resampling units within each repetition."""
    out = []
    groups = [np.flatnonzero(s.stratum == r) for r in np.unique(s.stratum)]
    for start in range(0, resamples, _BATCH):
        rows = min(_BATCH, resamples - start)
        idx = np.concatenate([pos[rng.integers(0, len(pos), (rows, len(pos)))] for pos in groups], axis=1)
        out.append(_stat(kind, s.x, s.n, idx))
    return np.concatenate(out)


def bootstrap_ci(
    a: Sample, b: Sample, kind: str, rng: np.random.Generator, resamples: int = RESAMPLES
) -> tuple[float, float]:
    """Percentile 95% interval of the ratio b / a."""
    ra, rb = _resampled(a, kind, rng, resamples), _resampled(b, kind, rng, resamples)
    ratio = relative_change(ra, rb) + 1.0
    ratio = ratio[~np.isnan(ratio)]
    if ratio.size == 0:
        return float("nan"), float("nan")
    return float(np.quantile(ratio, 0.025, method="lower")), float(np.quantile(ratio, 0.975, method="higher"))


def window_threshold(a: Sample, b: Sample, kind: str) -> float:
    """95% bound on the relative difference two engines show from window-to-window noise alone.

    Each side's per-repetition values, relative to that side's mean, give a pooled
    standard deviation; NaN when a side has fewer than two repetitions.
    """
    rel = []
    for s in (a, b):
        reps = np.unique(s.stratum)
        values = np.array([statistic(kind, Sample(s.x[m], s.stratum[m], None if s.n is None else s.n[m]))
                           for m in (s.stratum == r for r in reps)])  # fmt: skip
        if len(values) < 2 or not np.all(np.isfinite(values)):
            return float("nan")
        mean = values.mean()
        rel.append(values / mean - 1.0 if mean != 0 else np.zeros_like(values))
    df = len(rel[0]) + len(rel[1]) - 2
    sd = np.sqrt((np.sum(rel[0] ** 2) + np.sum(rel[1] ** 2)) / df)
    return float(stats.t.ppf(0.975, df) * sd * np.sqrt(1 / len(rel[0]) + 1 / len(rel[1])))


def verdict(
    change: float,
    threshold: float,
    lower_is_better: bool,
    min_change: float = MIN_CHANGE,
    unstable_threshold: float = UNSTABLE_THRESHOLD,
) -> str:
    """ClickHouse's rule: a change beating both thresholds is real, even at a noisy point.

    Sizes compare as |log ratio|, so thresholds apply alike to rises and falls.
    """
    if np.isnan(threshold):
        return "error"
    if np.isnan(change):
        change = 0.0
    size = float(log_ratio(1.0, 1.0 + change))
    if abs(change) > min_change and size > np.log1p(threshold):
        worse = change > 0 if lower_is_better else change < 0
        return "slower" if worse else "faster"
    return "unstable" if threshold > unstable_threshold else "unchanged"


@dataclass(frozen=True)
class Settings:
    min_change: float = MIN_CHANGE
    unstable_threshold: float = UNSTABLE_THRESHOLD
    permutations: int = PERMUTATIONS
    resamples: int = RESAMPLES
    seed: int = 0


def compare_samples(
    a: Sample, b: Sample, kind: str, lower_is_better: bool, settings: Settings = Settings()
) -> dict[str, Any]:
    """Everything the verdict rests on for one metric at one point."""
    rng = np.random.default_rng(settings.seed)
    out: dict[str, Any] = {
        "n_a": len(a),
        "n_b": len(b),
        "lower_is_better": lower_is_better,
        "repetitions_a": len(np.unique(a.stratum)),
        "repetitions_b": len(np.unique(b.stratum)),
    }
    if len(a) < MIN_UNITS or len(b) < MIN_UNITS:
        return {**out, "verdict": "not_comparable", "note": f"fewer than {MIN_UNITS} units on a side"}
    value_a, value_b = statistic(kind, a), statistic(kind, b)
    change = float(relative_change(value_a, value_b))
    perm = randomization_threshold(a, b, kind, rng, settings.permutations)
    window = window_threshold(a, b, kind)
    threshold = perm if np.isnan(window) else max(perm, window)
    low, high = bootstrap_ci(a, b, kind, rng, settings.resamples)
    note = "" if not np.isnan(window) else "one window per engine: noise between windows not measured"
    return {
        **out,
        "value_a": value_a,
        "value_b": value_b,
        "ratio": change + 1.0,
        "change": change,
        "ci_low": low,
        "ci_high": high,
        "perm_threshold": perm,
        "window_threshold": window,
        "threshold": threshold,
        "verdict": verdict(change, threshold, lower_is_better, settings.min_change, settings.unstable_threshold),
        "note": note,
    }


# --- units from a run ------------------------------------------------------------------


def latency_samples(run: Run, engine: str, schema: str, concurrency: int) -> dict[str, Sample]:
    """query_name -> per-query latencies (ms) of successful measured queries."""
    q = run.measured()
    q = q[(q["engine"] == engine) & (q["schema"] == schema) & (q["concurrency"] == concurrency) & q["error"].isna()]
    return {name: Sample.of(g["latency_ms"], g["repetition"]) for name, g in q.groupby("query_name")}


def throughput_sample(run: Run, engine: str, schema: str, concurrency: int) -> Sample:
    """Queries started per time slice of each measured window; the rate is sum(queries) / sum(seconds)."""
    levels = run.levels[(run.levels["engine"] == engine) & (run.levels["schema"] == schema)
                        & (run.levels["concurrency"] == concurrency)]  # fmt: skip
    q = run.measured()
    q = q[(q["engine"] == engine) & (q["schema"] == schema) & (q["concurrency"] == concurrency)]
    x, n, strata = [], [], []
    for lv in levels.itertuples():
        window = lv.measure_end_s - lv.measure_start_s
        if not window > 0:
            continue
        slices = max(1, int(window // THROUGHPUT_SLICE_S))
        width = window / slices
        starts = q.loc[q["repetition"] == lv.repetition, "start_s"].to_numpy()
        which = np.floor((starts - lv.measure_start_s) / width).astype(int)
        counts = np.bincount(np.clip(which, 0, slices - 1), minlength=slices)
        x.extend(counts)
        n.extend([width] * slices)
        strata.extend([lv.repetition] * slices)
    return Sample.of(x, strata, n)


def _catalog(run: Run, engine: str) -> pd.DataFrame:
    locks = run.locks[run.locks["engine"] == engine]
    return locks[["event", "lock", "mode", "role", "to_us"]].drop_duplicates("event")


def _amounts(frame: pd.DataFrame, catalog: pd.DataFrame, value: str) -> pd.DataFrame:
    """Rows of lock events with their amount in µs (counts as they are)."""
    out = frame.merge(catalog, on="event", how="inner")
    out["amount"] = np.where(out["role"] == "count", out[value], out[value] * out["to_us"])
    return out


def lock_samples_from_query_log(
    run: Run, engine: str, schema: str, concurrency: int
) -> dict[tuple[str, str, str], Sample]:
    """(lock, mode, role) -> per-query amounts, for queries the query log has."""
    q = run.measured()
    q = q[(q["engine"] == engine) & (q["schema"] == schema) & (q["concurrency"] == concurrency) & q["error"].isna()]
    qe = run.query_events[run.query_events["engine"] == engine]
    q = q[q["query_id"].isin(qe["query_id"])]
    if q.empty:
        return {}
    amounts = _amounts(qe[qe["query_id"].isin(q["query_id"])], _catalog(run, engine), "value")
    wide = amounts.pivot_table(index="query_id", columns=["lock", "mode", "role"], values="amount",
                               aggfunc="sum", fill_value=0.0)  # fmt: skip
    wide = wide.reindex(q["query_id"]).fillna(0.0)
    strata = q["repetition"].to_numpy()
    samples = {}
    for key in _keys(run, engine):
        x = wide[key].to_numpy() if key in wide.columns else np.zeros(len(q))
        samples[key] = Sample.of(x, strata)
    return samples


def lock_samples_from_events(
    run: Run, engine: str, schema: str, concurrency: int
) -> dict[tuple[str, str, str], Sample]:
    """(lock, mode, role) -> per sampler interval: lock amount and queries that ended in it.

    ``system.events`` counts the whole process, so the queries of every phase in the
    interval are the denominator, as in the lock budget.
    """
    ev = run.events[(run.events["engine"] == engine) & (run.events["schema"] == schema)
                    & (run.events["concurrency"] == concurrency)]  # fmt: skip
    levels = run.levels[(run.levels["engine"] == engine) & (run.levels["schema"] == schema)
                        & (run.levels["concurrency"] == concurrency)]  # fmt: skip
    if ev.empty or levels.empty:
        return {}
    q = run.queries[(run.queries["engine"] == engine) & (run.queries["schema"] == schema)
                    & (run.queries["concurrency"] == concurrency) & (run.queries["role"] == "query")]  # fmt: skip
    intervals = (
        ev[["repetition", "t_s", "interval_s"]]
        .drop_duplicates()
        .merge(levels[["repetition", "measure_start_s", "measure_end_s"]], on="repetition")
    )
    middle = intervals["t_s"] - intervals["interval_s"] / 2
    intervals = intervals[(middle >= intervals["measure_start_s"]) & (middle <= intervals["measure_end_s"])]
    intervals = intervals.reset_index(drop=True)
    ends = q.assign(end_s=q["start_s"] + q["latency_ms"] / 1000.0)
    counts = np.array([
        int(((ends["repetition"] == iv.repetition) & (ends["end_s"] > iv.t_s - iv.interval_s)
             & (ends["end_s"] <= iv.t_s)).sum())
        for iv in intervals.itertuples()
    ])  # fmt: skip
    amounts = _amounts(ev, _catalog(run, engine), "delta")
    amounts = amounts.merge(intervals[["repetition", "t_s"]].reset_index(), on=["repetition", "t_s"])
    out = {}
    for key in _keys(run, engine):
        lock, mode, role = key
        rows = amounts[(amounts["lock"] == lock) & (amounts["mode"] == mode) & (amounts["role"] == role)]
        x = np.bincount(rows["index"].to_numpy(dtype=int), weights=rows["amount"], minlength=len(intervals))
        out[key] = Sample.of(x, intervals["repetition"].to_numpy(), counts)
    return out


def _keys(run: Run, engine: str) -> list[tuple[str, str, str]]:
    cat = _catalog(run, engine)
    return sorted(set(zip(cat["lock"], cat["mode"], cat["role"], strict=True)))


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
    labels = list(engines)
    rows: list[dict[str, Any]] = []
    for b in labels[1:]:
        rows.extend(_compare_pair(run, labels[0], b, settings))
    frame = pd.DataFrame(rows).reindex(columns=COLUMNS)
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
    reps = frame[["repetitions_a", "repetitions_b"]].stack().dropna()
    if not reps.empty and reps.min() < 2:
        notes.append("one repetition per engine: thresholds cover noise inside a window only; "
                     "--repetitions 3 or more also measures noise between windows")  # fmt: skip
    return Comparison(frame, engines, notes, run.partition_keys())


def _compare_pair(run: Run, a: str, b: str, settings: Settings) -> list[dict[str, Any]]:
    levels = run.levels
    points_a = set(map(tuple, levels.loc[levels["engine"] == a, ["schema", "concurrency"]].to_numpy()))
    points_b = set(map(tuple, levels.loc[levels["engine"] == b, ["schema", "concurrency"]].to_numpy()))
    logged = set(run.query_events["engine"].unique()) if not run.query_events.empty else set()
    # Both sides measured the same way: per-query figures only if both engines have a query log.
    source = "query_log" if {a, b} <= logged else "events"
    rows = []
    for schema, conc in sorted(points_a & points_b):
        base = {"schema": schema, "concurrency": int(conc), "engine_a": a, "engine_b": b, "lock": "", "mode": ""}
        for family, metric in ((_latency_rows, "latency_ms"), (_throughput_rows, "throughput_qps"),
                               (_lock_rows, "lock")):  # fmt: skip
            try:
                rows.extend(family(run, base, source, settings))
            except Exception as exc:  # an internal error must show as one, never as a verdict
                rows.append({**base, "query_name": "", "metric": metric, "verdict": "error",
                             "note": f"{type(exc).__name__}: {exc}"})  # fmt: skip
    return rows


def _row(
    base: dict[str, Any], spec: dict[str, Any], samples: tuple[Sample | None, Sample | None], kind: str,
    lower: bool, settings: Settings,
) -> dict[str, Any]:  # fmt: skip
    row = {**base, **spec, "statistic": kind, "lower_is_better": lower}
    sa, sb = samples
    try:
        if sa is None or sb is None:
            side, which = (sb, "b") if sa is None else (sa, "a")
            value = statistic(kind, side) if side is not None and len(side) else float("nan")
            owner = base[f"engine_{which}"]
            row.update({f"value_{which}": value, "verdict": "not_comparable", "note": f"only {owner} has this metric"})
        else:
            row.update(compare_samples(sa, sb, kind, lower, settings))
    except Exception as exc:  # an internal error must show as one, never as a verdict
        row.update(verdict="error", note=f"{type(exc).__name__}: {exc}")
    return row


def _latency_rows(run: Run, base: dict[str, Any], source: str, settings: Settings) -> list[dict[str, Any]]:
    a, b, schema, conc = base["engine_a"], base["engine_b"], base["schema"], base["concurrency"]
    lat_a, lat_b = latency_samples(run, a, schema, conc), latency_samples(run, b, schema, conc)
    return [
        _row(
            base,
            {"query_name": name, "metric": "latency_ms", "source": "queries"},
            (lat_a.get(name), lat_b.get(name)),
            "median",
            True,
            settings,
        )  # fmt: skip
        for name in sorted(set(lat_a) | set(lat_b))
    ]


def _throughput_rows(run: Run, base: dict[str, Any], source: str, settings: Settings) -> list[dict[str, Any]]:
    a, b, schema, conc = base["engine_a"], base["engine_b"], base["schema"], base["concurrency"]
    samples = (throughput_sample(run, a, schema, conc), throughput_sample(run, b, schema, conc))
    spec = {"query_name": "", "metric": "throughput_qps", "source": "levels"}
    return [_row(base, spec, samples, "ratio", False, settings)]


def _lock_rows(run: Run, base: dict[str, Any], source: str, settings: Settings) -> list[dict[str, Any]]:
    a, b, schema, conc = base["engine_a"], base["engine_b"], base["schema"], base["concurrency"]
    lock_samples = lock_samples_from_query_log if source == "query_log" else lock_samples_from_events
    kind = "mean" if source == "query_log" else "ratio"
    la, lb = lock_samples(run, a, schema, conc), lock_samples(run, b, schema, conc)
    rows = []
    for key in sorted(set(la) | set(lb)):
        lock, mode, role = key
        samples = (la.get(key), lb.get(key))
        if _negligible(role, kind, *samples):
            continue  # a lock neither engine spent time on here
        spec = {"query_name": "", "metric": LOCK_METRICS[role], "lock": lock, "mode": mode, "source": source}
        rows.append(_row(base, spec, samples, kind, True, settings))
    return rows


def _negligible(role: str, kind: str, *samples: Sample | None) -> bool:
    """Under a microsecond per query on both sides: noise, not a lock worth a row."""
    floor = NEGLIGIBLE_COUNT if role == "count" else NEGLIGIBLE_US
    values = [statistic(kind, s) for s in samples if s is not None and len(s)]
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
    """The frame fields of a Run, whatever tables this version of the loader has."""
    return [f.name for f in dataclasses.fields(run) if isinstance(getattr(run, f.name), pd.DataFrame)]


def _relabel(run: Run, old: str, new: str) -> Run:
    frames = {}
    for t in _tables(run):
        frame = getattr(run, t)
        frames[t] = frame.assign(engine=frame["engine"].replace({old: new})) if "engine" in frame else frame
    return dataclasses.replace(run, **frames)


def _merge(a: Run, b: Run) -> Run:
    frames = {}
    for t in _tables(a):
        parts = [f for f in (getattr(a, t), getattr(b, t)) if not f.empty]
        frames[t] = pd.concat(parts, ignore_index=True) if parts else getattr(a, t)
    return dataclasses.replace(a, paths=a.paths + b.paths, manifests=a.manifests + b.manifests, **frames)


def regressions(frame: pd.DataFrame, metric: str, lock: str | None = None) -> pd.DataFrame:
    """Rows where the chosen metric got significantly worse, or could not be computed (a gate must not pass blind)."""
    rows = frame[frame["metric"] == metric]
    if lock:
        rows = rows[rows["lock"] == lock]
    return rows[rows["verdict"].isin(["slower", "error"])]
