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


@pytest.mark.engine  # not in the fast layer: it runs the fast layer itself
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


def test_every_fast_module_exists() -> None:
    """A misspelt or removed module in FAST_MODULES would silently shrink the fast layer."""
    from conftest import FAST_MODULES

    tests = Path(__file__).resolve().parent
    assert sorted(m for m in FAST_MODULES if not (tests / f"{m}.py").exists()) == []


@pytest.mark.engine  # not in the fast layer: it runs pytest in a subprocess (15 s on a loaded machine)
def test_tests_that_use_the_engine_are_not_fast_even_in_a_fast_module() -> None:
    result = subprocess.run([sys.executable, "-m", "pytest", "-m", "fast", "--collect-only", "-q", "-p",
                             "no:cacheprovider"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    fast = set(re.findall(r"^(tests/\S+::\S+)$", result.stdout, re.MULTILINE))
    assert "tests/test_locks.py::test_generic_names_get_a_mode_only_when_the_name_says_it" in fast
    assert "tests/test_stacks.py::test_folded_text_is_root_first_and_heaviest_first" in fast
    engine_tests = {
        "tests/test_locks.py::test_catalog_units_convert_to_microseconds",  # the engine fixture, via another one
        "tests/test_analysis_utilization.py::test_on_a_real_run",  # the tiny_run fixture
        "tests/test_flamegraph.py::test_report_of_a_run_with_stacks_has_the_flame_graph",  # lockprof run in a fixture
        "tests/test_pyspy.py::test_records_a_real_process_and_tells_engine_from_python",  # a chDB process
        "tests/test_layers.py::test_the_fast_subset_passes_with_the_engine_guard_on",  # marked engine
        "tests/test_benchmarks.py::test_suite_loop_runs_the_suite_and_counts_the_runs",  # marked engine
    }
    assert not engine_tests & fast, engine_tests & fast
    assert not [t for t in fast if t.startswith(("tests/test_driver.py", "tests/test_run_cli.py"))]


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
