"""`lockprof compare` as a real subprocess: an A/A run on the real engine, and the CI gate."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from ab_synthetic import synthetic_run, write_run
from conftest import lockprof_cli

SCENARIO = Path(__file__).resolve().parent / "scenarios" / "ab_tiny.py"


@pytest.fixture(scope="module")
def aa_run(tmp_path_factory) -> Path:
    """The same embedded engine on both sides, interleaved, three repetitions."""
    out = tmp_path_factory.mktemp("aa") / "run"
    result = lockprof_cli("run", str(SCENARIO), "--engine", "embedded", "--engine", "embedded", "--repetitions", "3",
                          "--concurrency", "1,2", "--duration", "1", "--warmup", "0.3", "--out", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    return out


def test_an_a_a_run_finds_no_latency_change(aa_run, tmp_path):
    csv = tmp_path / "ab.csv"
    result = lockprof_cli("compare", str(aa_run), "--csv", str(csv), "--fail-on", "latency")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "embedded#2 vs embedded" in result.stdout
    assert "locks per query" in result.stdout
    frame = pd.read_csv(csv)
    latency = frame[frame["metric"] == "latency_ms"]
    assert set(latency["concurrency"]) == {1, 2}
    # Same engine, same data: never a change on latency (unstable is an honest answer on a busy machine).
    assert set(latency["verdict"]) <= {"unchanged", "unstable"}, latency[["concurrency", "change", "threshold"]]
    assert not frame["verdict"].eq("error").any(), frame[frame["verdict"] == "error"]["note"].tolist()
    assert (frame["repetitions_a"].dropna() == 3).all()


def test_fail_on_gates_a_known_slowdown(tmp_path):
    run = write_run(synthetic_run(1.3), tmp_path / "slow")
    result = lockprof_cli("compare", str(run), "--fail-on", "latency")
    assert result.returncode == 5, result.stdout + result.stderr
    assert "latency_ms got worse" in result.stderr and "s c=1" in result.stderr
    assert "slower" in result.stdout
    assert lockprof_cli("compare", str(run), "--fail-on", "throughput").returncode == 5
    # The exclusive parts lock is only on one side: not a regression of the new engine.
    assert lockprof_cli("compare", str(run), "--fail-on", "lock_wait:parts").returncode == 0
    assert lockprof_cli("compare", str(run)).returncode == 0


def test_compare_refuses_what_it_cannot_compare(tmp_path):
    one = write_run(synthetic_run(1.0, "one", engines=("embedded",)), tmp_path / "one")
    result = lockprof_cli("compare", str(one))
    assert result.returncode == 1 and "fewer than two engines" in result.stderr
    other_host = {"cpu_model": "other", "cpu_count": 64}
    two = write_run(synthetic_run(1.0, "two", engines=("embedded",), host=other_host, seed=1), tmp_path / "two")
    result = lockprof_cli("compare", str(one), str(two))
    assert result.returncode == 1 and "different hosts" in result.stderr
    result = lockprof_cli("compare", str(one), str(two), "--allow-host-mismatch")
    assert result.returncode == 0, result.stderr
    assert "embedded@two vs embedded@one" in result.stdout and "not interleaved" in result.stdout
    assert lockprof_cli("compare", str(one), "--fail-on", "speed").returncode == 1  # a bad option (README exit codes)
