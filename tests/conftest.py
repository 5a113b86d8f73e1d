"""Shared fixtures. Every test uses one dataset cache per session, so datasets are built once,
and the embedded engine (one data path per process) is opened once per test process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = Path(__file__).resolve().parent / "scenarios"
TINY = SCENARIOS / "tiny.py"


@pytest.fixture(scope="session", autouse=True)
def lockprof_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("lockprof-cache")
    os.environ["LOCKPROF_CACHE"] = str(cache)
    return cache


def lockprof_cli(*args: str, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    """Run the real `lockprof` command in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "lockprof", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=kwargs.pop("cwd", ROOT),
        env={**os.environ, **kwargs.pop("env", {})},
        **kwargs,
    )


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, lockprof_cache: Path) -> Path:
    """A real run of the tiny scenario through the CLI, shared by the tests that only read it."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    result = lockprof_cli("run", str(TINY), "--out", str(out))
    assert result.returncode == 0, result.stderr + result.stdout
    return out


@pytest.fixture(scope="session")
def engine(lockprof_cache: Path):
    """The embedded engine in this test process (on its own instance slot, as a worker would)."""
    from lockprof.engines import open_engine

    eng = open_engine({"kind": "embedded"})
    yield eng
    eng.close()
