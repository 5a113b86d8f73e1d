"""USL fits: known coefficients are recovered, too few points give NaN and a note, never a crash."""

from __future__ import annotations

import math

import numpy as np
import pytest
from synthetic_runs import Level, make_run

from lockprof.analysis import fit_usl, usl_fits, usl_peak, usl_throughput
from lockprof.report import render_report

LAMBDA, SIGMA, KAPPA = 120.0, 0.08, 0.002
LEVELS = np.array([1, 2, 4, 8, 16, 32, 64])


def gunther(n, lam, sigma, kappa):
    """The law written out independently of the code under test."""
    n = np.asarray(n, dtype=float)
    return lam * n / (1 + sigma * (n - 1) + kappa * n * (n - 1))


def test_usl_throughput_at_hand_computed_points():
    assert usl_throughput(1, 120.0, 0.5, 0.1) == pytest.approx(120.0)  # one worker alone runs at λ
    assert usl_throughput(10, 100.0, 0.1, 0.01) == pytest.approx(1000 / (1 + 0.9 + 0.9))
    assert usl_throughput(4, 100.0, 1 / 3, 0.0) == pytest.approx(200.0)


def test_exact_usl_curve_gives_back_its_coefficients():
    fit = fit_usl(LEVELS, gunther(LEVELS, LAMBDA, SIGMA, KAPPA))
    assert fit["lambda_qps"] == pytest.approx(LAMBDA, rel=1e-4)
    assert fit["sigma"] == pytest.approx(SIGMA, rel=1e-3)
    assert fit["kappa"] == pytest.approx(KAPPA, rel=1e-3)
    peak = math.sqrt((1 - SIGMA) / KAPPA)
    assert fit["peak_concurrency"] == pytest.approx(peak, rel=1e-3)
    assert fit["peak_throughput_qps"] == pytest.approx(gunther(peak, LAMBDA, SIGMA, KAPPA), rel=1e-4)
    assert fit["r_squared"] == pytest.approx(1.0)
    assert fit["note"] == ""


def test_noisy_usl_curve_is_recovered_within_its_noise():
    rng = np.random.default_rng(1)
    n = np.repeat(LEVELS, 3)
    x = gunther(n, LAMBDA, SIGMA, KAPPA) * rng.normal(1.0, 0.01, len(n))
    fit = fit_usl(n, x)
    assert fit["sigma"] == pytest.approx(SIGMA, abs=0.02)
    assert fit["kappa"] == pytest.approx(KAPPA, rel=0.25)
    assert fit["peak_concurrency"] == pytest.approx(math.sqrt((1 - SIGMA) / KAPPA), rel=0.2)
    assert fit["sigma_se"] > 0 and fit["kappa_se"] > 0


def test_pure_contention_has_no_peak_but_an_asymptote():
    fit = fit_usl(LEVELS, gunther(LEVELS, 100.0, 0.25, 0.0))
    assert fit["sigma"] == pytest.approx(0.25, rel=1e-3)
    assert math.isinf(fit["peak_concurrency"])
    assert fit["peak_throughput_qps"] == pytest.approx(400.0, rel=1e-2)  # λ/σ
    assert "levels off" in fit["note"]
    assert usl_peak(100.0, 0.0, 0.0) == (math.inf, math.inf)


@pytest.mark.parametrize("n, x", [([1, 2], [10.0, 18.0]), ([1], [10.0]), ([], []), ([1, 1, 2, 2], [9, 10, 18, 19])])
def test_too_few_levels_give_nan_and_a_note(n, x):
    fit = fit_usl(n, x)
    assert math.isnan(fit["sigma"]) and math.isnan(fit["kappa"]) and math.isnan(fit["peak_concurrency"])
    assert "at least 3 concurrency levels" in fit["note"]


def test_usl_fits_per_schema_from_levels():
    levels = [Level("fast", c, int(gunther(c, 200.0, 0.05, 0.0) * 100), 100.0) for c in (1, 2, 4, 8)]
    levels += [Level("slow", c, int(gunther(c, 50.0, 0.5, 0.05) * 100), 100.0) for c in (1, 2, 4, 8)]
    fits = usl_fits(make_run(levels)).set_index("schema")
    assert fits.loc["fast", "sigma"] == pytest.approx(0.05, abs=0.01)
    assert fits.loc["slow", "sigma"] == pytest.approx(0.5, abs=0.05)
    assert fits.loc["slow", "kappa"] == pytest.approx(0.05, rel=0.2)
    assert fits.loc["slow", "peak_concurrency"] < fits.loc["fast", "peak_concurrency"]


def test_sigma_is_said_to_include_the_cores_when_workers_outnumber_them():
    levels = [Level("s", c, int(gunther(c, 200.0, 0.3, 0.0) * 100), 100.0) for c in (1, 2, 4, 8)]
    crowded = usl_fits(make_run(levels, cpu_count=2))
    assert "8 workers on 2 cores: σ includes their wait for a core" in crowded["note"].iloc[0]
    roomy = usl_fits(make_run(levels, cpu_count=64))
    assert "cores" not in roomy["note"].iloc[0]
    # and the report's wording does not invite reading σ as a lock
    text = render_report(make_run(levels, cpu_count=2))
    assert "more workers than cores" in text and "named only by the verdict" in text
    assert "serializes, such as" not in text
