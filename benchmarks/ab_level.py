"""The A/B test's level and power by simulation, through the real ``compare_windows``, with and without the
position term.

Each simulated point has ``--repetitions`` repetitions in turned order (A first in even
ones). Per repetition both windows share a drift (the machine's load, which pairing
removes), each window has its own noise, and whichever window runs second is scaled by
the position effect. The noise per repetition (the spread of one log ratio B / A) is
``--noise`` (9% on this machine: the per-comparison latency ratios of 16 repetitions
spread 2.2%). With ``--min-change 0`` only the test decides, so the called share of A/A
points is the test's level and of changed points its power; the verdict words
(unchanged / inconclusive) are counted at the default minimum change.

    python -m benchmarks.ab_level [--quick] [--points N] [--repetitions 16] [--noise 0.09]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.ab_common import rate_line
from benchmarks.common import host_line
from lockprof.analysis import ab
from lockprof.analysis.ab import MIN_CHANGE, Settings, Windows, compare_windows
from lockprof.analysis.ab_stats import engine_and_position

CALLED = ("faster", "slower")
Noise = Callable[[np.random.Generator, int], np.ndarray]  # one log-ratio noise per repetition


def gaussian(noise: float) -> Noise:
    return lambda rng, reps: rng.normal(0.0, noise, reps)


def resampled(paths: list[Path]) -> tuple[Noise, np.ndarray]:
    """Noise drawn from real A/A latency log ratios, each run's position effect removed, centred on 0."""
    from lockprof.analysis import load_run

    residuals = []
    for path in paths:
        run = load_run(path / "ab" if (path / "ab" / "manifest.json").is_file() else path)
        windows = ab.latency_windows(run)
        a, b = sorted(windows["engine"].unique())[:2]
        d, s = ab.log_ratios(*(Windows.of(windows[windows["engine"] == e], "latency_ms") for e in (a, b)))
        keep = np.isfinite(d)
        _, position = engine_and_position(d[keep], s[keep])
        residuals.append(d[keep] - position.estimate * s[keep])
    pool = np.concatenate(residuals)
    pool = pool - np.median(pool)
    return (lambda rng, reps: rng.choice(pool, reps)), pool


def simulated(rng: np.random.Generator, reps: int, ratio: float, noise: Noise,
              position: float) -> tuple[Windows, Windows]:  # fmt: skip
    """A's and B's windows of one point: B is ``ratio`` times A, a repetition's second window ``position`` times."""
    drift = rng.lognormal(0.0, 0.3, reps)
    a_first = np.arange(reps) % 2 == 0
    a = drift * np.where(a_first, 1.0, position)
    b = ratio * drift * np.exp(noise(rng, reps)) * np.where(a_first, position, 1.0)
    index = pd.RangeIndex(reps)
    starts_a = pd.Series(np.where(a_first, 0.0, 1.0), index=index)
    return Windows(pd.Series(a, index=index), starts_a), Windows(pd.Series(b, index=index), 1.0 - starts_a)


def verdicts(rng: np.random.Generator, points: int, reps: int, ratio: float, noise: Noise, position: float,
             settings: Settings) -> pd.Series:  # fmt: skip
    return pd.Series([compare_windows(*simulated(rng, reps, ratio, noise, position), lower_is_better=True,
                                      settings=settings)["verdict"] for _ in range(points)])  # fmt: skip


def disagreement(rng: np.random.Generator, points: int, reps: int, noise: Noise, ratio: float = 1.16,
                 position: float = 1.01, comparisons: int = 18) -> None:  # fmt: skip
    """Both tests on the same windows: how often each finds a change the other misses, and how often a benchmark
    of ``comparisons`` comparisons would see the test without the position term ahead by 2 or more."""
    with_term, without_term = Settings(min_change=0.0), Settings(min_change=0.0, paired_order=False)
    ahead = []
    for _ in range(points):
        a, b = simulated(rng, reps, ratio, noise, position)
        found = [compare_windows(a, b, lower_is_better=True, settings=s)["verdict"] in CALLED
                 for s in (with_term, without_term)]  # fmt: skip
        ahead.append(int(found[1]) - int(found[0]))
    ahead = np.array(ahead)
    gaps = rng.choice(ahead, (20000, comparisons)).sum(axis=1)
    print(f"RESULT ab_level same windows, B/A {ratio:.2f}, position x{position:.2f}: only the test with the position "
          f"term found it {np.mean(ahead == -1):.1%}, only the one without {np.mean(ahead == 1):.1%}; over "
          f"{comparisons} comparisons the one without is ahead by >= 2 in {np.mean(gaps >= 2):.1%}, by >= 3 in "
          f"{np.mean(gaps >= 3):.1%}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few points: checks the harness, measures nothing")
    parser.add_argument("--points", type=int, default=4000, help="simulated points per cell (default 4000)")
    parser.add_argument("--repetitions", type=int, default=16, help="repetitions per point (default 16)")
    parser.add_argument("--noise", type=float, default=0.09, help="sd of one repetition's log ratio (default 0.09)")
    parser.add_argument("--resample", type=Path, action="append", default=[],
                        help="an A/A run kept by ab_false_positives --keep: draw the noise from its latency log "
                             "ratios instead (repeatable)")  # fmt: skip
    args = parser.parse_args(argv)
    points = 100 if args.quick else args.points
    rng = np.random.default_rng(2026)
    started = time.perf_counter()
    print(host_line(), flush=True)
    if args.resample:
        noise, pool = resampled(args.resample)
        spread = 1.4826 * float(np.median(np.abs(pool)))
        described = (f"noise resampled from {len(pool)} real A/A log ratios of {len(args.resample)} runs (robust "
                     f"spread {spread:.0%}, standard deviation {pool.std():.0%}: heavy-tailed)")
    else:
        noise, described = gaussian(args.noise), f"Gaussian noise {args.noise:.0%} per repetition"
    print(f"# {points} simulated points per cell, {args.repetitions} repetitions, {described}; 'with' = engine "
          "and position estimated together, 'without' = signed-rank on the log ratios")
    for position in (1.0, 1.04, 1.08):
        for ratio, target, at_most in ((1.0, 0.05, True), (1.05, 0.5, False), (1.10, 0.8, False), (1.16, 0.8, False)):
            for term, paired in (("with", True), ("without", False)):
                test = Settings(min_change=0.0, paired_order=paired)
                v = verdicts(rng, points, args.repetitions, ratio, noise, position, test)
                what = "level (A/A)" if ratio == 1.0 else f"power ({ratio - 1:.0%} slower)"
                print(rate_line(f"ab_level {what}, position x{position:.2f}, {term} position term",
                                int(v.isin(CALLED).sum()), len(v), target, at_most), flush=True)  # fmt: skip
    disagreement(rng, points, args.repetitions, noise)
    print(f"# verdict words at the default minimum change ({MIN_CHANGE:.0%}), position x1.04, with the position term:")
    for reps in (8, args.repetitions, 4 * args.repetitions):
        for ratio in (1.0, 1.10):
            v = verdicts(rng, points, reps, ratio, noise, 1.04, Settings())
            shares = ", ".join(f"{k} {n / len(v):.1%}" for k, n in v.value_counts().items())
            print(f"RESULT ab_level words, {reps} repetitions, B/A {ratio:.2f}: {shares}", flush=True)
    print(f"RESULT ab_level time: {time.perf_counter() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
