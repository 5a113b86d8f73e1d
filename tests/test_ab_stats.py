"""A/B statistics on synthetic data whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
from ab_synthetic import synthetic_run

from lockprof.analysis.ab import (
    Sample,
    Settings,
    bootstrap_ci,
    compare,
    compare_samples,
    randomization_threshold,
    regressions,
    relative_change,
    verdict,
    window_threshold,
)
from lockprof.errors import LockprofError

FAST = Settings(permutations=400, resamples=400)


def latencies(rng, median_ms=10.0, sigma=0.3, reps=3, per_rep=300, rep_factors=None) -> Sample:
    """Log-normal query latencies, optionally with a multiplicative factor per repetition (window noise)."""
    factors = rep_factors or [1.0] * reps
    x = np.concatenate([median_ms * f * rng.lognormal(0.0, sigma, per_rep) for f in factors])
    return Sample.of(x, np.repeat(np.arange(len(factors)), per_rep))


def test_a_30_percent_slowdown_is_slower():
    rng = np.random.default_rng(1)
    out = compare_samples(latencies(rng), latencies(rng, median_ms=13.0), "median", True, FAST)
    assert out["verdict"] == "slower"
    assert out["ratio"] == pytest.approx(1.3, rel=0.06)
    assert out["ci_low"] < 1.3 < out["ci_high"]
    assert out["threshold"] < 0.1


def test_a_30_percent_speedup_is_faster_and_throughput_direction_is_reversed():
    rng = np.random.default_rng(2)
    out = compare_samples(latencies(rng, 13.0), latencies(rng, 10.0), "median", True, FAST)
    assert out["verdict"] == "faster"
    # Throughput: higher is better, so a 30% rise is "faster".
    a = Sample.of(rng.poisson(100, 24), np.repeat([0, 1, 2], 8), np.full(24, 0.25))
    b = Sample.of(rng.poisson(130, 24), np.repeat([0, 1, 2], 8), np.full(24, 0.25))
    out = compare_samples(a, b, "ratio", False, FAST)
    assert out["verdict"] == "faster"
    assert out["value_a"] == pytest.approx(400, rel=0.1)


def test_identical_distributions_are_unchanged_in_the_great_majority_of_seeds():
    verdicts = []
    for seed in range(40):
        rng = np.random.default_rng(100 + seed)
        factors = list(1 + rng.normal(0, 0.02, 3))  # a little drift between windows, as on a real machine
        a, b = latencies(rng, rep_factors=factors), latencies(rng, rep_factors=factors)
        verdicts.append(compare_samples(a, b, "median", True, Settings(permutations=300, resamples=100))["verdict"])
    changed = sum(v in ("faster", "slower") for v in verdicts)
    assert changed <= 2, verdicts
    assert "error" not in verdicts


def test_high_noise_is_unstable_not_a_change():
    rng = np.random.default_rng(3)
    # Few, very dispersed queries: the shuffles alone produce changes far above 20%.
    out = compare_samples(latencies(rng, sigma=1.5, per_rep=15), latencies(rng, sigma=1.5, per_rep=15),
                          "median", True, FAST)  # fmt: skip
    assert out["perm_threshold"] > 0.2
    assert out["verdict"] == "unstable"


def test_window_noise_is_measured_between_repetitions():
    rng = np.random.default_rng(4)
    # Plenty of queries, but each window is off by up to 40%: only the window threshold sees it.
    a = latencies(rng, rep_factors=[1.0, 1.4, 0.8])
    b = latencies(rng, rep_factors=[1.3, 0.9, 1.1])
    out = compare_samples(a, b, "median", True, FAST)
    assert out["perm_threshold"] < 0.1
    assert out["window_threshold"] > 0.2
    assert out["verdict"] == "unstable"
    assert np.isnan(window_threshold(latencies(rng, reps=1), latencies(rng, reps=1), "median"))


def test_shuffles_stay_within_a_repetition():
    # A drifts with B inside each repetition: shuffling across repetitions would invent noise.
    strata = np.repeat([0, 1], 50)
    a = Sample.of(np.where(strata == 0, 10.0, 20.0), strata)
    b = Sample.of(np.where(strata == 0, 10.0, 20.0), strata)
    assert randomization_threshold(a, b, "mean", np.random.default_rng(0), 200) == 0.0


def test_verdict_rules():
    assert verdict(0.3, 0.25, True) == "slower"  # beats both thresholds, even at a noisy point
    assert verdict(0.04, 0.01, True) == "unchanged"  # below the minimum change
    assert verdict(0.15, 0.3, True) == "unstable"
    assert verdict(-0.5, 0.1, False) == "slower"  # throughput fell
    assert verdict(-0.95, 3.0, True) == "faster"  # a 20x drop beats shuffles that make 4x rises
    assert verdict(-1.0, 3.0, True) == "faster"  # a lock time that vanished
    assert verdict(float("inf"), 0.1, True) == "slower"  # a lock time that appeared
    assert verdict(float("nan"), 0.0, True) == "unchanged"  # zero on both sides
    assert verdict(0.5, float("nan"), True) == "error"  # never a change from a failed computation
    assert list(relative_change(np.array([0.0, 0.0, 2.0]), np.array([0.0, 1.0, 1.0]))) == [0.0, np.inf, -0.5]


def test_ratio_statistic_and_its_interval():
    rng = np.random.default_rng(5)
    strata = np.repeat([0, 1], 20)
    a = Sample.of(rng.poisson(50, 40), strata, rng.poisson(10, 40) + 1)
    b = Sample.of(rng.poisson(100, 40), strata, rng.poisson(10, 40) + 1)
    low, high = bootstrap_ci(a, b, "ratio", rng, 500)
    assert 1.5 < low < 2.0 < high < 2.6


def test_too_few_units_is_not_comparable():
    out = compare_samples(Sample.of([1.0, 2.0], [0, 0]), Sample.of([1.0, 2.0, 3.0], [0, 0, 0]), "median", True)
    assert out["verdict"] == "not_comparable"


# --- compare() on a synthetic run with a known answer -----------------------------------


def test_compare_finds_a_known_slowdown_and_the_lock_swap():
    frame = compare(synthetic_run(1.3), settings=FAST).frame
    lat = frame[frame["metric"] == "latency_ms"]
    assert set(lat["verdict"]) == {"slower"}
    assert lat["ratio"].tolist() == pytest.approx([1.3, 1.3], rel=0.08)
    tput = frame[frame["metric"] == "throughput_qps"]
    assert set(tput["verdict"]) == {"slower"}
    assert tput["ratio"].tolist() == pytest.approx([1 / 1.3, 1 / 1.3], rel=0.08)
    wait = frame[(frame["metric"] == "lock_wait_us_per_query") & (frame["mode"] == "exclusive")]
    assert wait["value_a"].tolist() == pytest.approx([40.0, 80.0], rel=0.15)
    assert set(wait["verdict"]) == {"not_comparable"}  # the new engine has no exclusive parts-lock event
    shared = frame[(frame["metric"] == "lock_hold_us_per_query") & (frame["mode"] == "shared")]
    assert shared["value_b"].tolist() == pytest.approx([20.0, 20.0], rel=0.15)
    assert not frame["verdict"].isin(["error"]).any()
    assert len(regressions(frame, "latency_ms")) == 2


def test_compare_same_engine_twice_is_not_a_change():
    frame = compare(synthetic_run(1.0), settings=FAST).frame
    assert not frame[frame["metric"].isin(["latency_ms", "throughput_qps"])]["verdict"].isin(["faster", "slower"]).any()


def test_two_runs_need_one_engine_each_and_the_same_host():
    a = synthetic_run(1.0, "a", engines=("embedded",))
    b = synthetic_run(1.0, "b", engines=("embedded",), seed=1)
    out = compare(a, b, settings=FAST)
    assert list(out.engines) == ["embedded@a", "embedded@b"]
    assert any("not interleaved" in n for n in out.notes)
    other = synthetic_run(1.0, "c", engines=("embedded",), host={"cpu_model": "other", "cpu_count": 64})
    with pytest.raises(LockprofError, match="different hosts"):
        compare(a, other)
    assert any("different hosts" in n for n in compare(a, other, settings=FAST, allow_host_mismatch=True).notes)
    with pytest.raises(LockprofError, match="one engine in each"):
        compare(synthetic_run(1.0), b)


def test_an_internal_error_is_reported_never_a_verdict():
    run = synthetic_run(1.3)
    run.levels["measure_end_s"] = "broken"  # throughput cannot be computed from this
    frame = compare(run, settings=FAST).frame
    tput = frame[frame["metric"] == "throughput_qps"]
    assert set(tput["verdict"]) == {"error"}
    assert tput["note"].str.contains("TypeError").all()
    assert len(regressions(frame, "throughput_qps")) == 2  # a gate on it fails rather than passing blind


def test_a_serialized_engine_is_flagged():
    run = synthetic_run(1.0)
    run.manifests[0]["engines"][1]["self_check"] = {"verdict": "serialized", "speedup": 1.01}
    out = compare(run, settings=FAST)
    assert any("new serialized queries" in n for n in out.notes)
    assert out.frame.loc[out.frame["concurrency"] == 2, "note"].str.contains("new serializes queries").all()
    assert not out.frame.loc[out.frame["concurrency"] == 1, "note"].fillna("").str.contains("serializes").any()
