"""Managed engines: the version table, its errors, and building, checking and reusing an environment.

Environments here see the chDB of the test environment through a .pth file, so
pip downloads nothing; the venv creation, the identity file and the real
``SELECT version()`` check all run. A test that downloads chdb==4.0.2 (~150 MB,
about a minute) runs only with LOCKPROF_TEST_DOWNLOAD=1.
"""

from __future__ import annotations

import json
import os
import site
import sysconfig
from pathlib import Path

import pytest
from conftest import ROOT, SCENARIOS, lockprof_cli

from lockprof.engines import managed
from lockprof.engines.registry import parse_spec
from lockprof.errors import EngineError

SCENARIO = SCENARIOS / "ab_tiny.py"


def current_site_packages() -> list[Path]:
    import chdb

    paths = {Path(sysconfig.get_paths()["purelib"]), Path(chdb.__file__).resolve().parent.parent}
    return sorted(p for p in paths | {Path(p) for p in site.getsitepackages()} if p.is_dir())


def test_the_version_table():
    assert managed.known_versions() == ["25.8", "26.1", "26.3", "26.5", "26.7", "26.9"]
    assert managed.release_for("25.8").pin == "chdb==4.0.2"
    assert managed.release_for("26.9").pin == "chdb-core==26.9.0"
    assert all(managed.release_for(v).pin == f"chdb-core=={v}.0" for v in ("26.1", "26.3", "26.5", "26.7"))


def test_an_unknown_version_lists_the_known_ones(tmp_path):
    with pytest.raises(EngineError, match=r"unknown ClickHouse version '25\.9'; known versions: 25\.8, 26\.1, .*26\.9"):
        managed.ensure_env("25.9", root=tmp_path)
    with pytest.raises(EngineError, match=r"known versions: 25\.8"):
        parse_spec("24.3")
    with pytest.raises(EngineError, match=r"unknown engine 'clickhouse'; known engines: embedded, 25\.8"):
        parse_spec("clickhouse")
    assert not (tmp_path / "engines" / "25.9").exists()
    assert parse_spec("embedded").options == {}


def test_cli_reports_unknown_versions_with_the_engine_exit_code():
    result = lockprof_cli("engines", "install", "27.1")
    assert result.returncode == EngineError.exit_code
    assert "known versions: 25.8" in result.stderr


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, managed.ManagedEnv, list[str]]:
    root = tmp_path_factory.mktemp("engines-root")
    said: list[str] = []
    env = managed.ensure_env("26.9", said.append, root, base_site_packages=current_site_packages())
    return root, env, said


def test_an_environment_is_built_verified_and_stamped(built):
    root, env, said = built
    assert env.path == root / "engines" / "26.9"
    assert env.python.exists()
    identity = json.loads((env.path / managed.IDENTITY).read_text())
    assert identity["pin"] == "chdb-core==26.9.0"
    assert identity["format"] == managed.ENV_FORMAT
    assert identity["clickhouse_version"].startswith("26.9.")  # asked of the engine itself
    assert any("verifying" in s for s in said) and any("ready" in s for s in said)
    assert not [p for p in (root / "engines").iterdir() if ".building-" in p.name]


def test_a_good_environment_is_reused_and_listed(built):
    root, env, _ = built
    said: list[str] = []
    again = managed.ensure_env("26.9", said.append, root)
    assert again.identity["created_at"] == env.identity["created_at"]
    assert said == []
    states = {s.version: s.state for s in managed.list_engines(root)}
    assert states["26.9"] == "installed"
    assert states["25.8"] == "available"


def test_a_stale_environment_is_rebuilt(built):
    root, env, _ = built
    ident = env.path / managed.IDENTITY
    ident.write_text(json.dumps({**env.identity, "pin": "chdb-core==26.8.0"}))
    assert "built for chdb-core==26.8.0" in managed.check_env(env.path, env.release)
    assert managed.list_engines(root)[-1].state.startswith("stale")
    said: list[str] = []
    rebuilt = managed.ensure_env("26.9", said.append, root, base_site_packages=current_site_packages())
    assert "stale" in said[0]
    assert rebuilt.identity["pin"] == "chdb-core==26.9.0"
    assert managed.check_env(rebuilt.path, rebuilt.release) is None


def test_a_wrong_table_row_is_caught_by_version(tmp_path, monkeypatch):
    # A row claiming the chDB installed here embeds 26.7: the engine's own version() says otherwise.
    monkeypatch.setitem(managed.RELEASES, "26.7", managed.Release("26.7", "chdb-core", "26.9.0"))
    with pytest.raises(EngineError, match="reports ClickHouse 26.9.* not 26.7; the version table is wrong"):
        managed.ensure_env("26.7", root=tmp_path, base_site_packages=current_site_packages())
    assert sorted(p.name for p in (tmp_path / "engines").iterdir()) == [".26.7.lock"]


def test_a_version_spec_runs_its_worker_in_the_managed_environment(built, tmp_path):
    root, env, _ = built
    out = tmp_path / "run"
    result = lockprof_cli("run", str(SCENARIO), "--engine", "26.9", "--concurrency", "1", "--duration", "0.5",
                          "--warmup", "0.2", "--out", str(out), env={"LOCKPROF_CACHE": str(root)})  # fmt: skip
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["engines"][0]["label"] == "26.9"
    assert manifest["engines"][0]["clickhouse_version"].startswith("26.9.")


@pytest.mark.skipif(
    os.environ.get("LOCKPROF_TEST_OFFLINE") == "1", reason="LOCKPROF_TEST_OFFLINE=1: no package download"
)
def test_real_download_of_25_8_and_an_ab_run(tmp_path):
    """The real thing: a managed environment for ClickHouse 25.8 (chdb==4.0.2, ~150 MB) and an A/B run on it."""
    cache = {"LOCKPROF_CACHE": str(tmp_path / "cache")}
    installed = lockprof_cli("engines", "install", "25.8", env=cache)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert "ClickHouse 25.8." in installed.stdout
    out = tmp_path / "run"
    result = lockprof_cli("run", str(SCENARIO), "--engine", "25.8", "--engine", "embedded", "--concurrency", "1,2",
                          "--duration", "1", "--repetitions", "1", "--out", str(out), env=cache, cwd=ROOT)  # fmt: skip
    assert result.returncode == 0, result.stderr
    compared = lockprof_cli("compare", str(out), env=cache)
    assert compared.returncode == 0, compared.stderr
    assert "25.8: ClickHouse 25.8." in compared.stdout


def test_engines_locks_lists_the_counters_the_release_itself_has(tmp_path):
    """Asked of the 26.9 engine: its parts lock has acquisition and hold counters in both modes, and the Keeper
    storage lock's hold counter is gone (upstream removed hold times from profiled locks: PR 101502)."""
    import pandas as pd
    from launched import server_python

    server_python()  # the 26.9 environment in the test cache
    csv = tmp_path / "locks.csv"
    result = lockprof_cli("engines", "locks", "26.9", "--csv", str(csv))
    assert result.returncode == 0, result.stderr
    counters = pd.read_csv(csv, dtype={"release": str})
    present = set(counters.loc[counters["present"], "event"])
    assert {"PartsLocks", "PartsLockHoldMicroseconds", "SharedPartsLocks", "SharedPartsLockHoldMicroseconds",
            "KeeperStorageLockWaitMicroseconds"} <= present
    assert "KeeperStorageLockHoldMicroseconds" not in present
    assert "SharedPartsLocks" in result.stdout and "✓" in result.stdout
    missing = lockprof_cli("engines", "locks", "26.1")  # not installed in the test cache
    assert missing.returncode == EngineError.exit_code
    assert "not installed" in missing.stderr and "lockprof engines install 26.1" in missing.stderr
