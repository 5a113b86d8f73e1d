"""Which run a notebook reads: LOCKPROF_RUN as the user typed it, though Jupyter runs inside notebooks/."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lockprof.notebook_run import run_directory


def _run_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "manifest.json").write_text("{}")
    return path


def test_a_relative_lockprof_run_is_found_where_the_user_typed_it(tmp_path, monkeypatch):
    root = tmp_path / "project"
    run = _run_dir(root / "runs" / "x")
    inside = root / "notebooks"
    inside.mkdir()
    monkeypatch.chdir(inside)  # where Jupyter runs the notebook
    assert run_directory({"LOCKPROF_RUN": "runs/x", "PWD": str(root)}) == str(run.resolve())
    assert run_directory({"LOCKPROF_RUN": "runs/x"}) == str(run.resolve())  # no PWD: the notebook's parent
    two = run_directory({"LOCKPROF_RUN": os.pathsep.join(["runs/x", str(run)]), "PWD": str(root)})
    assert two.split(os.pathsep) == [str(run.resolve())] * 2


def test_a_lockprof_run_that_names_no_run_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"LOCKPROF_RUN=nowhere: no run directory there .*nowhere"):
        run_directory({"LOCKPROF_RUN": "nowhere", "PWD": str(tmp_path)})


def test_without_lockprof_run_the_newest_run_is_read(tmp_path, monkeypatch):
    old, new = _run_dir(tmp_path / "runs" / "old"), _run_dir(tmp_path / "runs" / "new")
    os.utime(old, (1, 1))
    monkeypatch.chdir(tmp_path)
    assert run_directory({}) == str(new)
    lonely = tmp_path / "elsewhere" / "notebooks"
    lonely.mkdir(parents=True)
    monkeypatch.chdir(lonely)
    with pytest.raises(FileNotFoundError, match="no run directory found under runs/"):
        run_directory({"PWD": str(lonely)})
