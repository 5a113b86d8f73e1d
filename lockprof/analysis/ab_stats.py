"""Exact rank statistics for paired windows: each point's estimate, interval and p-value from one null.

An A/B point has one log ratio ``d_r = log(B_r / A_r)`` per repetition. Two ways to test
it, both exact (no normal approximation, valid at any sample size):

- :func:`one_sample`: the Wilcoxon signed-rank test of ``d`` centred on 0, its
  Hodges-Lehmann estimate and interval (order statistics of the Walsh averages). It
  assumes ``d`` symmetric around the effect.
- :func:`engine_and_position`: when the repetitions alternate which engine ran second
  (and so which worker was started second: see :class:`lockprof.run.Swap`), ``d_r =
  effect + position * s_r + noise`` with ``s_r = +1`` when B ran second. The repetitions
  with B second and those with A second are two samples whose locations differ by twice
  the position effect; ``d`` of the first and ``-d`` of the second differ by twice the
  engine effect. Each is a Wilcoxon rank-sum (Mann-Whitney) shift with its exact
  interval, so the engine effect is estimated with the position effect removed (and
  vice versa). In an A/A run ``d`` with B second and ``-d`` with A second are both
  log(second window / first window), identically distributed whatever the position
  effect: the test is exact without any symmetry assumption.

One rule for zeros and ties: a difference of exactly 0 counts against a change in both
directions. The p-value is then the smallest level at which the interval excludes 0, so
"p <= 0.05" and "the 95% interval excludes no change" are the same statement, always.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

ALPHA = 0.05
NAN = float("nan")


@dataclass(frozen=True)
class Shift:
    """A location on the log scale: Hodges-Lehmann estimate, exact interval (NaN when n cannot reach it), p of 0."""

    estimate: float
    low: float
    high: float
    p_value: float
    n: int

    @property
    def has_interval(self) -> bool:
        return bool(np.isfinite(self.low) and np.isfinite(self.high))


@lru_cache(maxsize=256)
def signed_rank_cdf(n: int) -> np.ndarray:
    """P(T <= t), t = 0 .. n(n+1)/2, for the signed-rank statistic of n untied non-zero values under the null."""
    counts = np.ones(1)
    for i in range(1, n + 1):  # the generating function prod (1 + x^i)
        counts = np.concatenate([counts, np.zeros(i)]) + np.concatenate([np.zeros(i), counts])
    return np.cumsum(counts) / 2.0**n


@lru_cache(maxsize=256)
def rank_sum_cdf(m: int, n: int) -> np.ndarray:
    """P(U <= u), u = 0 .. m n, for the Mann-Whitney statistic of samples of m and n untied values under the null.

    The counts are the coefficients of the Gaussian binomial [m + n choose m]: the product of
    (1 - x^(n + i)) / (1 - x^i) for i = 1 .. m, each division a running sum with stride i.
    """
    size = m * n + 1
    counts = np.zeros(size)
    counts[0] = 1.0
    for i in range(1, m + 1):
        shifted = np.zeros(size)
        shifted[n + i :] = counts[: size - n - i]
        counts = counts - shifted
        for k in range(i, size):
            counts[k] += counts[k - i]
    return np.cumsum(counts) / counts.sum()


def _from_differences(w: np.ndarray, cdf: np.ndarray, alpha: float) -> Shift:
    """Estimate, interval and p from the pairwise quantities whose count above 0 is the rank statistic."""
    w = np.sort(w)
    size = len(w)
    below, above = int(np.sum(w <= 0)), int(np.sum(w >= 0))
    p = min(1.0, 2.0 * min(cdf[below], cdf[above]))
    reachable = np.flatnonzero(cdf <= alpha / 2)
    if reachable.size == 0:
        return Shift(float(np.median(w)), NAN, NAN, p, size)
    c = int(reachable[-1])
    return Shift(float(np.median(w)), float(w[c]), float(w[size - 1 - c]), p, size)


def one_sample(d: np.ndarray, alpha: float = ALPHA) -> Shift:
    """Wilcoxon signed-rank: the centre of ``d``, its exact interval and the p-value of 0."""
    n = len(d)
    if n == 0:
        return Shift(NAN, NAN, NAN, 1.0, 0)
    walsh = ((d[:, None] + d[None, :]) / 2.0)[np.triu_indices(n)]
    return _with_n(_from_differences(walsh, signed_rank_cdf(n), alpha), n)


def two_sample(x: np.ndarray, y: np.ndarray, alpha: float = ALPHA) -> Shift:
    """Wilcoxon rank-sum: the shift of ``x`` over ``y``, its exact interval and the p-value of no shift."""
    if len(x) == 0 or len(y) == 0:
        return Shift(NAN, NAN, NAN, 1.0, len(x) + len(y))
    diffs = (x[:, None] - y[None, :]).ravel()
    return _with_n(_from_differences(diffs, rank_sum_cdf(len(x), len(y)), alpha), len(x) + len(y))


def can_reject(m: int, n: int, alpha: float = ALPHA) -> bool:
    """Whether samples of m and n can ever give a rank-sum p-value of ``alpha`` or less."""
    return m > 0 and n > 0 and bool(rank_sum_cdf(m, n)[0] <= alpha / 2)


def engine_and_position(d: np.ndarray, s: np.ndarray, alpha: float = ALPHA) -> tuple[Shift, Shift]:
    """The engine effect with the position effect removed, and the position effect (both log ratios).

    ``s`` is +1 where B ran second, -1 where A did. Halving the rank-sum shift keeps each
    estimate on the scale of one ratio: the engine's B / A, the position's second / first.
    """
    second, first = d[s > 0], d[s < 0]
    engine = _halved(two_sample(second, -first, alpha))
    position = _halved(two_sample(second, first, alpha))
    return engine, position


def _halved(shift: Shift) -> Shift:
    return Shift(shift.estimate / 2, shift.low / 2, shift.high / 2, shift.p_value, shift.n)


def _with_n(shift: Shift, n: int) -> Shift:
    return Shift(shift.estimate, shift.low, shift.high, shift.p_value, n)
