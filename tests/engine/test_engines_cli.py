"""The ``--engine`` spec through the real CLI: a bad one is refused before anything is installed."""

from __future__ import annotations

from pathlib import Path

from conftest import TINY, lockprof_cli

from lockprof.errors import EngineError


def test_a_sweep_spec_reaches_the_run_expanded(tmp_path: Path) -> None:
    """`--engine 26.5..26.1` is refused by the CLI before anything is installed, with its one message."""
    result = lockprof_cli("run", str(TINY), "--engine", "26.5..26.1", "--out", str(tmp_path / "r"))
    assert result.returncode == EngineError.exit_code, result.stderr
    assert "runs backwards" in result.stderr and not (tmp_path / "r").exists()
