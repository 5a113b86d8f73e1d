"""The test layers: the fast subset runs without any engine, and its guard really stops one."""

from __future__ import annotations

import os
import subprocess
import sys

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


def test_every_test_module_lives_in_one_layer_folder(request: pytest.FixtureRequest) -> None:
    """The folder is the layer: no test module outside tests/unit and tests/engine, no name in both (pytest
    imports them by file name), and this one, in tests/unit, is marked fast and only fast."""
    tests = ROOT / "tests"
    assert sorted(p.name for p in tests.glob("test_*.py")) == []
    assert sorted(p.relative_to(tests).as_posix() for p in tests.glob("*/**/test_*.py")
                  if p.parent.name not in ("unit", "engine")) == []
    unit = {p.name for p in (tests / "unit").glob("test_*.py")}
    engine = {p.name for p in (tests / "engine").glob("test_*.py")}
    assert unit and engine and not unit & engine, unit & engine
    assert request.node.get_closest_marker("fast") and not request.node.get_closest_marker("engine")


CAPTURE = ("lockprof.run", "lockprof.worker", "lockprof.workerproc", "lockprof.driver", "lockprof.engines",
           "lockprof.samplers", "chdb", "clickhouse_connect")


@pytest.mark.parametrize("module", ["lockprof.summary", "lockprof.report", "lockprof.analysis", "lockprof.plots"])
def test_renderers_and_the_analysis_load_nothing_of_capture(module: str) -> None:
    """Reading a run needs no orchestrator, driver, sampler or engine: the layers hold."""
    code = (f"import sys, {module}; "
            f"print('\\n'.join(m for m in sys.modules if m.startswith({CAPTURE!r})))")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [], f"importing {module} loaded {result.stdout.split()}"
