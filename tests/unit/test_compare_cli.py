"""`lockprof compare` as a real subprocess on synthetic runs: the CI gate."""

from __future__ import annotations

from ab_synthetic import synthetic_run, write_run
from conftest import lockprof_cli


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


def test_summary_of_a_run_whose_manifest_names_no_scenario_says_so(tmp_path):
    run = write_run(synthetic_run(1.0), tmp_path / "unnamed")  # a hand-made manifest: no scenario name
    result = lockprof_cli("summary", str(run))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("unnamed scenario — run r1")
