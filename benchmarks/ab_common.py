"""What the A/A and power benchmarks share: one interleaved run cut into independent A/B comparisons.

A run of ``blocks x repetitions`` repetitions is cut into blocks of consecutive
repetitions; each block is one A/B comparison at the default repetitions, judged by
``lockprof.analysis.ab.compare`` exactly as ``lockprof compare`` would judge it. Cutting
one long run (rather than starting one run per comparison) saves the start-up and
dataset preparation of every comparison; the windows of a block are still measured
between the other blocks' windows, on a busy machine, as a user's run is.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from benchmarks.common import SCENARIOS, TINY_SCENARIO
from lockprof.analysis.load import Run
from lockprof.run import AB_DEFAULTS as DEFAULT  # what `lockprof run` does with two or more engines

PERF = ("latency_ms", "throughput_qps")
CPU = "cpu_ms_per_query"
CHANGED = ("faster", "slower")


@dataclasses.dataclass(frozen=True)
class Plan:
    scenario: Path
    schemas: list[str]
    concurrency: list[int]
    warmup_s: float
    duration_s: float
    repetitions: int  # per comparison
    blocks: int  # comparisons


def plan(quick: bool, blocks: int, main: bool = False) -> Plan:
    """The measurement a rate is counted on.

    By default the cheap plan: the tiny scenario's namespace_day (300 parts), concurrency
    1, 0.2 s warm-up + 0.5 s windows, the A/B default repetitions per comparison. A rate
    needs dozens of comparisons, and a comparison of the main scenario costs about 6
    minutes, mostly restarting workers over 10 000 parts; the cheap one about a minute.
    The statistics judged are the same; ``main`` measures the main scenario as a user would.
    """
    if quick:
        return Plan(TINY_SCENARIO, ["day"], [1], 0.1, 0.3, 3, min(blocks, 2))
    if main:
        return Plan(SCENARIOS / "namespace_partitioning.py", ["namespace_day"], [1, 2], DEFAULT["warmup_s"],
                    DEFAULT["duration_s"], DEFAULT["repetitions"], blocks)
    return Plan(TINY_SCENARIO, ["namespace_day"], [1], 0.2, 0.5, DEFAULT["repetitions"], blocks)


def measure(p: Plan, engines: list[str], out: Path) -> Run:
    """Build the first engine's datasets in a run of their own, then the interleaved A/B run.

    The first worker then reuses a cached dataset while the second builds its copy in the
    A/B run itself: the situation that made A/A runs biased.
    """
    from lockprof.analysis import load_run
    from lockprof.progress import PlainReporter
    from lockprof.run import RunOptions, run

    quiet = PlainReporter(io.StringIO())
    run(RunOptions(scenario_path=p.scenario, engines=[engines[0]], schemas=p.schemas, concurrency=[1],
                   warmup_s=0.0, duration_s=0.2, samplers=(), out=out / "prepare"), reporter=quiet)  # fmt: skip
    path = run(RunOptions(scenario_path=p.scenario, engines=engines, schemas=p.schemas, concurrency=p.concurrency,
                          warmup_s=p.warmup_s, duration_s=p.duration_s, repetitions=p.repetitions * p.blocks,
                          out=out / "ab"), reporter=quiet)  # fmt: skip
    return load_run(path)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """``--main``, ``--keep`` and ``--pool``: what is measured, where it is kept, and which kept runs count with it."""
    parser.add_argument("--main", action="store_true",
                        help="measure the main scenario (namespace_day, c=1 and 2, default windows) instead of the "
                             "cheap plan (tiny namespace_day, c=1, 0.5 s windows)")
    parser.add_argument("--keep", type=Path, help="keep the measured run directories here (else removed)")
    parser.add_argument("--pool", type=Path, action="append", default=[],
                        help="a run directory kept earlier with --keep, whose comparisons count too (repeatable)")


def pooled(p: Plan, engines: list[str], paths: list[Path]) -> list[Run]:
    """Earlier runs of this benchmark, kept with ``--keep``, whose comparisons count with this invocation's.

    A rate's interval narrows only with many comparisons, more than one sitting measures;
    pooling lets the evidence accumulate. A run counts only if it measured the same plan
    on the same engines under the current restart rule; otherwise the rate would mix methods.
    """
    from lockprof.analysis import load_run

    if not p.blocks and not paths:
        raise SystemExit("nothing to judge: --blocks 0 and no --pool")
    runs = []
    for path in paths:
        run = load_run(path / "ab" if (path / "ab" / "manifest.json").is_file() else path)
        problem = mismatch(run.manifest, p, engines)
        if any(r.manifest["run_id"] == run.manifest["run_id"] for r in runs):
            problem = "it is already counted (the same run given twice)"
        if problem:
            raise SystemExit(f"--pool {path}: cannot count this run: {problem}")
        runs.append(run)
    return runs


def mismatch(manifest: dict, p: Plan, engines: list[str]) -> str | None:
    """Why a kept run is not a measurement of plan ``p`` on ``engines`` under the current rule, or None."""
    params = manifest["parameters"]
    reps = params["repetitions"]
    restarted = sorted(r["before_repetition"] for r in manifest.get("worker_restarts", []))
    checks = [
        # Runs from before a failed level stopped making a run incomplete: one whose only failure is a failed
        # level (listed in failed_levels, nothing cut short) measured every repetition it planned.
        (manifest.get("status") == "complete" or not manifest.get("failures"),
         f"its status is {manifest.get('status')!r}, not complete: {'; '.join(manifest.get('failures') or [])}"),
        (manifest["scenario"]["sha256"] == hashlib.sha256(p.scenario.read_bytes()).hexdigest(),
         f"its scenario is not today's {p.scenario.name}"),
        ([e["spec"] for e in manifest["engines"]] == engines,
         f"its engines are {[e['spec'] for e in manifest['engines']]}, not {engines}"),
        ((params["schemas"], params["concurrency"], params["warmup_s"], params["duration_s"])
         == (p.schemas, p.concurrency, p.warmup_s, p.duration_s),
         "its schemas, concurrency levels or window lengths differ"),
        (reps % p.repetitions == 0, f"its {reps} repetitions are not whole comparisons of {p.repetitions}"),
        (restarted == list(range(1, reps)), "its workers were not restarted before every repetition"),
    ]  # fmt: skip
    return next((why for ok, why in checks if not ok), None)


def block(run: Run, reps: range) -> Run:
    """The run restricted to some repetitions, renumbered from 0, as if it had been run alone."""
    frames = {}
    for f in dataclasses.fields(run):
        frame = getattr(run, f.name)
        if not isinstance(frame, pd.DataFrame):
            continue
        if "repetition" in frame:
            frame = frame[frame["repetition"].isin(reps)].assign(repetition=lambda d: d["repetition"] - reps.start)
        frames[f.name] = frame
    ids = set(frames["queries"]["query_id"])
    frames["query_events"] = run.query_events[run.query_events["query_id"].isin(ids)]
    return dataclasses.replace(run, cache={}, **frames)


def verdicts(runs: list[Run], p: Plan, position_term: bool = True) -> pd.DataFrame:
    """Every latency, throughput and CPU-time point of every block comparison of every run, blocks numbered on.

    ``position_term=False`` judges the same windows without the position effect (the signed-rank test of the
    log ratios, as the method did before), to show what modelling it changes.
    """
    from lockprof.analysis.ab import Settings, compare

    settings = Settings(paired_order=position_term)
    rows = []
    for run in runs:
        for k in range(run.manifest["parameters"]["repetitions"] // p.repetitions):
            frame = compare(block(run, range(k * p.repetitions, (k + 1) * p.repetitions)), settings=settings).frame
            rows.append(frame[frame["metric"].isin([*PERF, CPU])].assign(block=len(rows)))
    return pd.concat(rows, ignore_index=True)


def first_repetition(run: Run) -> pd.DataFrame:
    """Per latency point: repetition 0 (the only one measured by workers that were not restarted; before it the
    first engine's dataset was cached, the second's built) against the run's other repetitions, both with the
    run's position effect removed. Its percentile among all repetitions says whether it stands out."""
    from lockprof.analysis.ab import Windows, latency_windows, log_ratios
    from lockprof.analysis.ab_stats import engine_and_position

    per = latency_windows(run)
    a, b = (e["label"] for e in run.manifest["engines"][:2])
    rows = []
    for (schema, conc), point in per.groupby(["schema", "concurrency"]):
        sides = [Windows.of(point[point["engine"] == e], "latency_ms") for e in (a, b)]
        d, s = log_ratios(*sides)
        _, position = engine_and_position(d, s)
        corrected = d - position.estimate * s
        rows.append({"schema": schema, "concurrency": conc, "first": float(np.exp(corrected[0])),
                     "percentile": float((corrected < corrected[0]).mean() * 100),
                     "rest_median": float(np.exp(np.median(corrected[1:]))), "repetitions": len(d)})  # fmt: skip
    return pd.DataFrame(rows)


def rate_line(name: str, hits: int, n: int, target: float, at_most: bool) -> str:
    """``RATE name: k/n = p (95% CI lo-hi, Clopper-Pearson) target <= t: met|not met|unclear (...)``.

    An unclear rate says how many trials would settle it if the rest went the target's way.
    """
    if n == 0:
        return f"RATE {name}: 0/0 (nothing measured)"
    ci = stats.binomtest(hits, n).proportion_ci(0.95, method="exact")
    sign = "<=" if at_most else ">="
    ok = [ci.high <= target, ci.low <= target] if at_most else [ci.low >= target, ci.high >= target]
    state = "met" if all(ok) else "not met" if not any(ok) else (
        f"unclear (interval spans the target; met needs {needed(hits, n, target, at_most)} trials with every "
        f"further one {'without a call' if at_most else 'a call'})")
    return (f"RATE {name}: {hits}/{n} = {hits / n:.3f} (95% CI {ci.low:.3f}-{ci.high:.3f}) "
            f"target {sign} {target:g}: {state}")


def needed(hits: int, n: int, target: float, at_most: bool) -> int:
    """The fewest trials at which the rate would be judged met if every trial after the n measured went the
    target's way (no call for an upper bound, a call for a lower one)."""
    total = n
    while True:
        k = hits if at_most else hits + (total - n)
        ci = stats.binomtest(k, total).proportion_ci(0.95, method="exact")
        if (ci.high <= target) if at_most else (ci.low >= target):
            return total
        total += 1


def per_trial(points: pd.DataFrame, called: tuple[str, ...], by: list[str]) -> tuple[int, int]:
    """Trials with at least one called point, and trials, where a trial is one group of ``by``."""
    hits = points.groupby(by)["verdict"].agg(lambda v: bool(v.isin(called).any()))
    return int(hits.sum()), len(hits)
