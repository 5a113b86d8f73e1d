"""Universal Scalability Law fits of throughput against concurrency.

Gunther's USL: X(N) = λN / (1 + σ(N − 1) + κN(N − 1)). λ is the throughput of one
worker alone, σ the contention share (throughput flattens towards λ/σ), κ the coherency
cost (throughput peaks at N* = √((1 − σ)/κ) and then falls).

σ and κ are curve shapes, not causes: σ takes in every reason the workers do not run in
parallel, and running more workers than cores is one (on a 2-core machine, σ mostly measures
the cores). A fit never names a lock; only the diagnosis, from the lock's wait counters, does.
Three coefficients need at least three distinct concurrency levels; with fewer the fit
is NaN with a note saying why, never an exception.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy.optimize import OptimizeWarning, curve_fit

from lockprof.analysis.load import Run
from lockprof.analysis.memo import per_run
from lockprof.analysis.utilization import cpu_count

# A fit is drawn only when it explains most of the variation between levels and has a level to spare
# beyond its three coefficients; otherwise the table shows it with its r² and the figure leaves it out.
MIN_R_SQUARED = 0.9
MIN_LEVELS_TO_DRAW = 4

USL_COLUMNS = ["engine", "schema", "points", "levels", "lambda_qps", "sigma", "kappa", "sigma_se", "kappa_se",
               "peak_concurrency", "peak_throughput_qps", "r_squared", "note"]


def usl_throughput(n: float | np.ndarray, lambda_qps: float, sigma: float, kappa: float) -> float | np.ndarray:
    """Throughput the USL predicts at concurrency n."""
    n = np.asarray(n, dtype=float)
    out = lambda_qps * n / (1 + sigma * (n - 1) + kappa * n * (n - 1))
    return out if out.ndim else float(out)


NO_PEAK_BEYOND = 1e6  # a fitted κ this close to 0 is "no coherency cost", not a real peak


def usl_peak(lambda_qps: float, sigma: float, kappa: float) -> tuple[float, float]:
    """(concurrency, throughput) at the USL peak. Without a coherency cost the curve never
    turns down: the concurrency is infinite and the throughput is the asymptote λ/σ."""
    n = float(np.sqrt(max(1 - sigma, 0.0) / kappa)) if np.isfinite(kappa) and kappa > 0 else np.inf
    if n > NO_PEAK_BEYOND:
        return np.inf, float(lambda_qps / sigma) if sigma > 0 else np.inf
    n = max(n, 1.0)
    return n, float(usl_throughput(n, lambda_qps, sigma, kappa))


def fit_usl(concurrency: np.ndarray | pd.Series, throughput_qps: np.ndarray | pd.Series) -> dict[str, float | str]:
    """Fit λ, σ, κ (σ, κ ≥ 0) to measured points; NaN coefficients and a note when it cannot."""
    n = np.asarray(concurrency, dtype=float)
    x = np.asarray(throughput_qps, dtype=float)
    ok = np.isfinite(n) & np.isfinite(x) & (n > 0)
    n, x = n[ok], x[ok]
    levels = len(np.unique(n))
    result: dict[str, float | str] = {"points": len(n), "levels": levels, "lambda_qps": np.nan, "sigma": np.nan,
                                      "kappa": np.nan, "sigma_se": np.nan, "kappa_se": np.nan,
                                      "peak_concurrency": np.nan, "peak_throughput_qps": np.nan,
                                      "r_squared": np.nan, "note": ""}
    if levels < 3:
        result["note"] = f"needs at least 3 concurrency levels to fit 3 coefficients, got {levels}"
        return result
    if np.all(x <= 0):
        result["note"] = "no throughput was measured"
        return result
    lam0 = float(np.mean(x[n == n.min()]) / n.min())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            params, cov = curve_fit(usl_throughput, n, x, p0=[lam0, 0.05, 0.001],
                                    bounds=([0, 0, 0], [np.inf, 1, np.inf]), maxfev=20000)
    except (RuntimeError, ValueError) as exc:
        result["note"] = f"the fit did not converge: {exc}"
        return result
    lam, sigma, kappa = (float(p) for p in params)
    se = np.sqrt(np.clip(np.diag(cov), 0, None)) if np.all(np.isfinite(cov)) else np.full(3, np.nan)
    residual = x - usl_throughput(n, lam, sigma, kappa)
    total = np.sum((x - x.mean()) ** 2)
    peak_n, peak_x = usl_peak(lam, sigma, kappa)
    notes = []
    if levels == 3:
        notes.append("only 3 levels for 3 coefficients: nothing is left to check the fit, treat it as a sketch")
    if not np.isfinite(peak_n):
        notes.append("no coherency cost found: throughput levels off at λ/σ instead of peaking")
    elif peak_n > 4 * n.max():
        notes.append(f"the peak lies far beyond the highest level measured ({n.max():.0f})")
    result.update(lambda_qps=lam, sigma=sigma, kappa=kappa, sigma_se=float(se[1]), kappa_se=float(se[2]),
                  peak_concurrency=peak_n, peak_throughput_qps=peak_x,
                  r_squared=float(1 - np.sum(residual**2) / total) if total > 0 else np.nan,
                  note="; ".join(notes))
    return result


@per_run
def level_throughput(run: Run) -> pd.DataFrame:
    """One throughput point per measured level and repetition (more points than the per-level mean)."""
    levels = run.levels.copy()
    levels["window_s"] = levels["measure_end_s"] - levels["measure_start_s"]
    levels = levels[levels["window_s"] > 0]
    levels["throughput_qps"] = levels["queries"] / levels["window_s"]
    return levels[["engine", "schema", "concurrency", "repetition", "throughput_qps"]].reset_index(drop=True)


@per_run
def usl_fits(run: Run) -> pd.DataFrame:
    """The USL fit per engine and schema; ``drawable`` says whether it is good enough to draw, and
    ``note`` says when more workers than cores ran, since σ then includes their wait for a core."""
    points = level_throughput(run)
    rows = [{"engine": engine, "schema": schema, **fit_usl(group["concurrency"], group["throughput_qps"])}
            for (engine, schema), group in points.groupby(["engine", "schema"], sort=True)]
    out = pd.DataFrame(rows, columns=USL_COLUMNS)
    cores = cpu_count(run)
    for i, (engine, schema) in enumerate(zip(out["engine"], out["schema"], strict=True)):
        most = points.loc[(points["engine"] == engine) & (points["schema"] == schema), "concurrency"].max()
        if cores and most > cores and pd.notna(out.at[i, "sigma"]):
            said = f"{most} workers on {cores} cores: σ includes their wait for a core"
            out.at[i, "note"] = "; ".join(n for n in (out.at[i, "note"], said) if n)
    out["drawable"] = (out["levels"] >= MIN_LEVELS_TO_DRAW) & (out["r_squared"] >= MIN_R_SQUARED)
    return out
