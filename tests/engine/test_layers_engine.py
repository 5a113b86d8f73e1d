"""The test layers as pytest sees them: the fast layer is the unit folder and passes with the engine guard on."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from conftest import ROOT


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


def test_the_fast_layer_is_the_unit_folder_and_the_engine_layer_the_engine_folder() -> None:
    """`-m fast` selects exactly the tests in tests/unit and `-m engine` exactly those in tests/engine."""
    def collect(*args: str) -> set[str]:
        result = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                                 *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        return set(re.findall(r"^(tests/\S+::\S+)$", result.stdout, re.MULTILINE))

    fast, engine, unit_folder = collect("-m", "fast"), collect("-m", "engine"), collect("tests/unit")
    assert fast == unit_folder and not fast & engine
    assert all(t.startswith("tests/unit/") for t in fast) and all(t.startswith("tests/engine/") for t in engine)
    assert "tests/unit/test_locks.py::test_generic_names_get_a_mode_only_when_the_name_says_it" in fast
    assert "tests/unit/test_stacks.py::test_folded_text_is_root_first_and_heaviest_first" in fast
    assert {
        "tests/engine/test_locks_engine.py::test_catalog_units_convert_to_microseconds",
        "tests/engine/test_analysis_utilization_engine.py::test_on_a_real_run",
        "tests/engine/test_layers_engine.py::test_the_fast_subset_passes_with_the_engine_guard_on",
        "tests/engine/test_benchmarks_engine.py::test_suite_loop_runs_the_suite_and_counts_the_runs",
    } <= engine
