"""Which run directory a notebook analyses: ``LOCKPROF_RUN`` as the user meant it, or the newest run.

Jupyter runs a notebook with its own folder (``notebooks/``) as the working directory, so a
relative ``LOCKPROF_RUN=runs/x`` set in the project's root would name nothing there. A
relative path is therefore looked up where the user typed it (``PWD``, the shell's
directory when Jupyter started), then in the working directory and its parent.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "LOCKPROF_RUN"


def run_directory(environ: dict[str, str] | None = None) -> str:
    """The run directories to analyse, absolute and joined by ``os.pathsep`` (two runs for an A/B), from
    ``LOCKPROF_RUN``; without it, the newest run under ``runs/``. Raises FileNotFoundError naming what
    was looked for and where."""
    environ = dict(os.environ) if environ is None else environ
    given = [p for p in environ.get(ENV, "").split(os.pathsep) if p]
    bases = _bases(environ)
    if not given:
        return str(_newest_run(bases))
    return os.pathsep.join(str(_resolve(Path(p), bases)) for p in given)


def _bases(environ: dict[str, str]) -> list[Path]:
    cwd = Path.cwd()
    bases = [Path(environ["PWD"])] if environ.get("PWD") else []
    return list(dict.fromkeys([*bases, cwd, cwd.parent]))


def _resolve(path: Path, bases: list[Path]) -> Path:
    candidates = [path] if path.is_absolute() else [base / path for base in bases]
    for candidate in candidates:
        if (candidate / "manifest.json").is_file():
            return candidate.resolve()
    where = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(f"{ENV}={path}: no run directory there (looked for a manifest.json in {where})")


def _newest_run(bases: list[Path]) -> Path:
    found = [p for base in bases if (base / "runs").is_dir() for p in (base / "runs").iterdir()
             if (p / "manifest.json").is_file()]  # fmt: skip
    if not found:
        raise FileNotFoundError(f"no run directory found under runs/: run `lockprof run "
                                f"scenarios/namespace_partitioning.py` first, or set {ENV}")  # fmt: skip
    return max(found, key=lambda p: p.stat().st_mtime)
