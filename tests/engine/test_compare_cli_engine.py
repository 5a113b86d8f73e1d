"""`lockprof compare` as a real subprocess on an A/A run of the real engine."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from conftest import SCENARIOS, lockprof_cli

from lockprof import store

SCENARIO = SCENARIOS / "ab_tiny.py"


@pytest.fixture(scope="module")
def aa_run(tmp_path_factory) -> Path:
    """The same embedded engine on both sides, interleaved in turned order, eight repetitions (the fewest the
    position-corrected test can judge: four with each order)."""
    out = tmp_path_factory.mktemp("aa") / "run"
    # A run of one engine first: then the A/A's first worker reuses its cached dataset while the second builds its
    # copy, the situation that made two workers of one engine differ.
    prepared = lockprof_cli("run", str(SCENARIO), "--concurrency", "1", "--duration", "0.2", "--warmup", "0",
                            "--samplers", "off", "--out", str(out.parent / "prepare"))  # fmt: skip
    assert prepared.returncode == 0, prepared.stderr
    result = lockprof_cli("run", str(SCENARIO), "--engine", "embedded", "--engine", "embedded",
                          "--repetitions", "8", "--concurrency", "1,2", "--duration", "0.6", "--warmup", "0.2",
                          "--out", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    return out


def test_an_a_a_run_finds_no_latency_change(aa_run, tmp_path):
    csv = tmp_path / "ab.csv"
    # An A/A point is called changed only at p <= 5% with the estimate past the minimum change: with 25% that
    # takes window noise pushing the windows of one worker position a quarter above the other's, so a loaded
    # machine cannot fail this test. Worker bias: the next test.
    result = lockprof_cli("compare", str(aa_run), "--csv", str(csv), "--fail-on", "latency", "--min-change", "0.25")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "embedded#2 vs embedded" in result.stdout
    assert "locks per query" in result.stdout
    frame = pd.read_csv(csv)
    perf = frame[frame["metric"].isin(["latency_ms", "throughput_qps"])]
    assert set(perf["concurrency"]) == {1, 2} and set(perf["metric"]) == {"latency_ms", "throughput_qps"}
    # Same engine, same data: never a change on latency or throughput (inconclusive is an honest answer on a busy
    # machine); "unchanged" only where the whole interval lies within the minimum change.
    assert set(perf["verdict"]) <= {"unchanged", "inconclusive"}, perf[["concurrency", "metric", "ratio", "ci_low"]]
    shown = perf[perf["verdict"] == "unchanged"]
    assert ((shown["ci_low"] >= 1 / 1.25) & (shown["ci_high"] <= 1.25)).all(), shown
    assert "position effect" in result.stdout
    assert not frame["verdict"].eq("error").any(), frame[frame["verdict"] == "error"]["note"].tolist()
    assert (frame["repetitions_a"].dropna() == 8).all()


def test_an_a_a_run_turns_the_order_and_both_workers_do_the_same_work(aa_run):
    from lockprof.analysis import load_run
    from lockprof.analysis.accounting import per_query, window_totals

    run = load_run(aa_run)
    first = run.levels[run.levels["position"] == 0].sort_values(["concurrency", "repetition"])
    assert first["engine"].tolist() == ["embedded", "embedded#2"] * 8  # A B, B A, ... at each level
    # Before every repetition but the first, fresh workers started in the reverse order: each engine had each
    # worker position (and data slot) in half the repetitions, each measured by processes of their own.
    manifest = store.read_manifest(aa_run)
    paths = {e["label"]: e["data_path"] for e in manifest["engines"]}
    restarts = manifest["worker_restarts"]
    assert [r["before_repetition"] for r in restarts] == [1, 2, 3, 4, 5, 6, 7]
    assert [r["order"] for r in restarts] == [["embedded#2", "embedded"], ["embedded", "embedded#2"]] * 3 + [
        ["embedded#2", "embedded"]]
    swapped = {"embedded": paths["embedded#2"], "embedded#2": paths["embedded"]}
    assert [r["data_paths"] for r in restarts] == [swapped, paths] * 3 + [swapped]
    # The worker that built its dataset and the one that reused it plan every query over the same parts
    # with the same context-lock acquisitions: counts of work, not of time, so load cannot blur them.
    pq = per_query(window_totals(run)).pivot_table(index=["concurrency", "event"], columns="engine",
                                                   values="per_query")  # fmt: skip
    for event in ("SelectedParts", "SelectedMarks", "ContextLock"):
        rows = pq.xs(event, level="event")
        assert (rows["embedded#2"] / rows["embedded"]).between(0.97, 1.03).all(), (event, rows)
