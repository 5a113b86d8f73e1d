"""The test layers: the fast subset runs without any engine, and its guard really stops one."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import GUARD_DIR, ROOT


def _guarded(code: str) -> subprocess.CompletedProcess:
    """Run Python code in a child process that loads the engine guard as a fast session's children do."""
    env = {**os.environ, "LOCKPROF_TEST_ENGINE_GUARD": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(GUARD_DIR), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


def test_the_guard_refuses_to_import_the_engine_in_a_child_process() -> None:
    result = _guarded("import chdb")
    assert result.returncode != 0
    assert "the fast test subset must not open an engine (import chdb)" in result.stderr


def test_the_guard_refuses_to_start_a_clickhouse_binary() -> None:
    result = _guarded("import subprocess; subprocess.run(['/usr/bin/clickhouse-server', '--version'])")
    assert result.returncode != 0
    assert "must not open an engine (start clickhouse-server)" in result.stderr


def test_without_the_guard_the_same_child_imports_the_engine() -> None:
    """The control: the refusal above comes from the guard, not from a broken environment."""
    env = {**os.environ, "LOCKPROF_TEST_ENGINE_GUARD": "0"}  # as outside a fast session, even inside one
    result = subprocess.run([sys.executable, "-c", "import chdb"], capture_output=True, text=True, env=env,
                            timeout=120)
    assert result.returncode == 0, result.stderr


@pytest.mark.engine  # it runs a whole pytest session
def test_the_fast_subset_passes_with_the_engine_guard_on(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "fast", "-q", "-p", "no:cacheprovider", "--basetemp", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    tail = result.stdout[-3000:] + result.stderr[-2000:]
    assert result.returncode == 0, tail
    assert "engine guard: on" in result.stdout, tail
    passed = re.search(r"(\d+) passed", result.stdout)
    assert passed and int(passed.group(1)) >= 50, tail
    assert not re.search(r"\d+ (failed|error)", result.stdout), tail
