"""Smoke tests of the benchmark harness: each benchmark runs in --quick mode and prints its ratio lines.

Timings are not asserted: quick mode measures nothing worth asserting on a shared machine.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pandas as pd
import pytest
from conftest import ROOT

NUMBER = r"-?[\d.]+"
RATIO = rf"median {NUMBER}x \(min-max {NUMBER}-{NUMBER}, 95% CI {NUMBER}-{NUMBER}, n=\d+\)"

EXPECTED = {
    "driver_overhead": [rf"^RATIO driver_overhead c=1 lockprof/bare throughput: {RATIO} target >= 0.95: ",
                        rf"^RATIO driver_overhead c=2 lockprof/bare throughput: {RATIO} target >= 0.95: "],
    "sampler_overhead": [rf"^RATIO sampler_overhead c=1 all-samplers/no-samplers throughput: {RATIO} target >= 0.97",
                         rf"^RATIO sampler_overhead all levels pooled: {RATIO}"],
    "dataset_build": [rf"^RATIO dataset_build fresh lockprof/raw time: {RATIO} target <= 1.3: ",
                      rf"^RATIO dataset_build cached second call/raw time: {RATIO}"],
    "analysis_speed": [rf"^RATIO analysis_speed summary/plain pyarrow read time: {RATIO}",
                       r"^RESULT analysis_speed summary: load_run\+summary median .* records/s; peak RSS median "
                       r".* GiB; target < 5 s: .*; target < 4 GiB: ",
                       r"^RESULT analysis_speed report: load_run\+render_report median .* peak RSS median .* GiB; "
                       r"target < 30 s: ",
                       r"^RESULT analysis_speed memory: peak RSS summary [\d.]+ GiB, report [\d.]+ GiB"],
    "ab_false_positives": [r"^RATE ab_false_positives comparisons calling any latency or throughput point: \d+/\d+ = "
                           rf"{NUMBER} \(95% CI {NUMBER}-{NUMBER}\) target <= 0.05: ",
                           r"^RATE ab_false_positives latency-throughput pairs .* target <= 0.05: ",
                           r"^RATE ab_false_positives comparisons calling CPU time .* target <= 0.05: ",
                           r"^RATE ab_false_positives latency\+throughput points called faster/slower \(secondary",
                           r"^RESULT ab_false_positives whole run day c=1 latency_ms: ",
                           r"^RESULT ab_false_positives worker position day c=1: latency of the worker started second",
                           r"^RESULT ab_false_positives repetition 0 day c=1: latency B/A ",
                           r"^RESULT ab_false_positives time: "],
    "ab_power": [r"^RESULT ab_power injected change day c=1 latency_ms: ",
                 r"^RATE ab_power comparisons calling every latency and throughput point slower: \d+/\d+ = .* "
                 r"target >= 0.8: ",
                 r"^RATE ab_power latency\+throughput points called slower \(secondary.*: \d+/\d+ = .* "
                 r"target >= 0.8: "],
    "ab_level": [r"^RATE ab_level level \(A/A\), position x1.04, with position term: \d+/100 = .* target <= 0.05: ",
                 r"^RATE ab_level power \(10% slower\), position x1.08, without position term: ",
                 r"^RESULT ab_level words, 16 repetitions, B/A 1.10: "],
    "forecast_validation": [r"^RESULT forecast_validation main embedded namespace_day c=\d+ throughput q/s: 2 cores "
                            rf"predicted from 1 {NUMBER}, measured {NUMBER}, error "],
    "big_table": [r"^RESULT big_table parts: 2000 active parts, 2000 partitions",
                  r"^RESULT big_table build: [\d.]+ s .*cached=True",
                  r"^RESULT big_table disk: bytes_on_disk [\d.]+ GB, filesystem usage",
                  r"^RESULT big_table memory: peak RSS"],
}


def run_module(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_benchmark_quick_prints_its_lines(name: str) -> None:
    result = run_module(f"benchmarks.{name}", "--quick")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.startswith("HOST "), result.stdout
    for pattern in EXPECTED[name]:
        assert re.search(pattern, result.stdout, re.MULTILINE), f"{pattern!r} not in:\n{result.stdout}"


def test_ab_benchmarks_pool_kept_runs_of_their_own_plan_only(tmp_path) -> None:
    kept = tmp_path / "kept"
    first = run_module("benchmarks.ab_power", "--quick", "--keep", str(kept))
    assert first.returncode == 0, first.stderr[-3000:]
    rate = r"^RATE ab_power latency\+throughput points called slower \(.*\): (\d+)/(\d+) .*$"
    alone = run_module("benchmarks.ab_power", "--quick", "--blocks", "0", "--pool", str(kept))
    assert alone.returncode == 0, alone.stderr[-3000:]
    assert re.search(rate, alone.stdout, re.M).group(0) == re.search(rate, first.stdout, re.M).group(0)
    both = run_module("benchmarks.ab_power", "--quick", "--pool", str(kept))
    assert both.returncode == 0, both.stderr[-3000:]
    assert int(re.search(rate, both.stdout, re.M).group(2)) == 2 * int(re.search(rate, first.stdout, re.M).group(2))
    assert "all 6 repetitions of run 2/2" in both.stdout
    other = run_module("benchmarks.ab_false_positives", "--quick", "--blocks", "0", "--pool", str(kept))
    assert other.returncode != 0 and "cannot count this run: its engines are" in other.stderr, other.stderr
    twice = run_module("benchmarks.ab_power", "--quick", "--blocks", "0", "--pool", str(kept), "--pool", str(kept))
    assert twice.returncode != 0 and "already counted" in twice.stderr, twice.stderr


def test_run_all_runs_the_chosen_benchmarks() -> None:
    result = run_module("benchmarks", "--quick", "--only", "dataset_build")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "== dataset_build: ok" in result.stdout
    assert "RATIO dataset_build fresh lockprof/raw time" in result.stdout


def test_synthetic_run_has_the_tables_and_columns_of_a_real_run(tiny_run, tmp_path) -> None:
    """The analysis benchmark is only meaningful if its synthetic run looks like a real one."""
    from benchmarks.synthetic_run import write_synthetic_run
    from lockprof.analysis import load_run

    write_synthetic_run(tmp_path / "synthetic", queries=64)
    real, synthetic = load_run(tiny_run), load_run(tmp_path / "synthetic")
    for table in ("queries", "levels", "query_events", "locks", "events", "metrics"):
        ours: pd.DataFrame = getattr(synthetic, table)
        theirs: pd.DataFrame = getattr(real, table)
        missing = set(theirs.columns) - set(ours.columns)
        assert not missing, f"{table}: the synthetic run lacks {sorted(missing)}"
        for column in theirs.columns:
            if theirs[column].notna().any() and ours[column].notna().any():
                assert theirs[column].dtype.kind == ours[column].dtype.kind, (table, column)


def test_suite_loop_runs_the_suite_and_counts_the_runs(tmp_path) -> None:
    """Two runs of a small passing selection, and one of a selection that fails, each counted as such."""
    def loop(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "benchmarks.suite_loop", "--log-dir", str(tmp_path), *args],
                              cwd=ROOT, capture_output=True, text=True, timeout=300)

    pytest_args = ("-p", "no:cacheprovider", "--basetemp", str(tmp_path / "basetemp"))
    ok = loop("--runs", "2", "--", *pytest_args, "tests/unit/test_store.py")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert len(re.findall(r"^RUN \d/2 pass passed=\d+ failed=0 errors=0 .* duration=\d+s load1 start=[\d.]+ "
                          r"mean=[\d.]+ max=[\d.]+$", ok.stdout, re.MULTILINE)) == 2, ok.stdout
    assert "RESULT suite_loop: 2/2 runs passed" in ok.stdout
    bad = loop("--runs", "1", "--", *pytest_args, "tests/unit/test_store.py", "-k", "no_such_test_name")
    assert bad.returncode == 1 and "RESULT suite_loop: 0/1 runs passed" in bad.stdout, bad.stdout
