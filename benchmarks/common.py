"""What every benchmark shares: a private cache, interleaved A/B repetitions, and ratio lines with a spread.

The machine these run on is usually shared, so an absolute time means little. Each
benchmark measures its baseline in the same process and run, alternating with the thing
under test, and prints one ``RATIO`` line per comparison: the median of the per-pair
ratios, their min–max, and a bootstrap interval of that median. A target is called met
only when the whole interval meets it; an interval across the target says so.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "scenarios"
TINY_SCENARIO = ROOT / "tests" / "scenarios" / "tiny.py"

T = TypeVar("T")


def private_cache(prefix: str) -> Path:
    """Point LOCKPROF_CACHE at a fresh temporary directory, removed at exit, so the user's cache is untouched."""
    path = Path(tempfile.mkdtemp(prefix=f"lockprof-bench-{prefix}-"))
    os.environ["LOCKPROF_CACHE"] = str(path)
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def arguments(description: str, repetitions: int) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the harness, measures nothing")
    parser.add_argument("--repetitions", type=int, default=repetitions, help="interleaved A/B pairs per point")
    return parser


def interleaved(repetitions: int, baseline: Callable[[], T], candidate: Callable[[], T]) -> list[tuple[T, T]]:
    """(baseline, candidate) pairs, run A B, B A, A B ... so drift of a busy machine falls on both sides."""
    pairs = []
    for rep in range(repetitions):
        if rep % 2 == 0:
            a = baseline()
            b = candidate()
        else:
            b = candidate()
            a = baseline()
        pairs.append((a, b))
    return pairs


@dataclass(frozen=True)
class Spread:
    median: float
    low: float
    high: float
    ci_low: float
    ci_high: float
    n: int


def spread(values: Sequence[float], resamples: int = 4000, seed: int = 0) -> Spread:
    """Median, min–max and a percentile-bootstrap 95% interval of the median."""
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        nan = float("nan")
        return Spread(nan, nan, nan, nan, nan, 0)
    rng = np.random.default_rng(seed)
    medians = np.median(rng.choice(x, size=(resamples, len(x)), replace=True), axis=1)
    lo, hi = np.percentile(medians, [2.5, 97.5])
    return Spread(float(np.median(x)), float(x.min()), float(x.max()), float(lo), float(hi), len(x))


def verdict(s: Spread, target: float, higher_is_better: bool) -> str:
    """met / not met / unclear, judged on the whole bootstrap interval, never on the median alone."""
    if s.n < 3:
        return f"not judged ({s.n} repetition{'s' if s.n != 1 else ''}; needs 3 or more)"
    ok_low, ok_high = (s.ci_low >= target, s.ci_high >= target) if higher_is_better else (
        s.ci_high <= target, s.ci_low <= target)
    if ok_low and ok_high:
        return "met"
    if not ok_low and not ok_high:
        return "not met"
    return "unclear (interval spans the target)"


def ratio_line(name: str, values: Sequence[float], target: float | None = None, higher_is_better: bool = True,
               unit: str = "x") -> str:
    """One parseable line: ``RATIO name: median … (min–max …, 95% CI …, n=…) target …: verdict``."""
    s = spread(values)
    line = (f"RATIO {name}: median {s.median:.3f}{unit} (min-max {s.low:.3f}-{s.high:.3f}, "
            f"95% CI {s.ci_low:.3f}-{s.ci_high:.3f}, n={s.n})")
    if target is not None:
        sign = ">=" if higher_is_better else "<="
        line += f" target {sign} {target:g}: {verdict(s, target, higher_is_better)}"
    return line


def host_line() -> str:
    """Cores, CPU model and load, printed first so a result is never read without its machine."""
    from lockprof.run import host_info

    host = host_info()
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return f"HOST {host['cpu_count']} cores, {host['cpu_model']}, load average {load}"
