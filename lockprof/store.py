"""The run directory: a versioned manifest plus Parquet tables, every file written atomically.

Layout::

    RUN/manifest.json            what ran, where, on which engines; status complete/incomplete
    RUN/<table>/<part>.parquet   one part per engine and level, so an interrupted run keeps
                                 every level it finished and nothing half-written
    RUN/logs/                    worker stderr, for crash reports

A run directory is created under a hidden temporary name and renamed into place
once its first manifest exists, so a reader never sees a directory without one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from lockprof.errors import RunDirError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
TABLES = ("queries", "levels", "events", "metrics", "query_events", "locks", "driver", "driver_stacks", "stacks")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same directory and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def write_part(run_dir: Path, table: str, part: str, frame: pd.DataFrame) -> Path | None:
    """Write one Parquet part of a table atomically; empty frames write nothing."""
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}")
    if frame.empty:
        return None
    path = run_dir / table / f"{part}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# Long tables repeat a few names millions of times (dozens of ProfileEvents per query);
# reading those columns as categoricals keeps a million-query run in a few GiB, not tens.
# Labels (engine, schema, replica) stay plain strings: comparisons relabel them.
CATEGORICAL = {
    "query_events": ("query_id", "event"),
    "events": ("event",),
    "metrics": ("metric",),
}


def read_table(run_dir: Path, table: str) -> pd.DataFrame:
    """All parts of a table, concatenated; an empty frame if the run has none."""
    folder = Path(run_dir) / table
    parts = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    if not parts:
        return pd.DataFrame()
    if table not in CATEGORICAL:
        return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    import pyarrow as pa
    import pyarrow.parquet as pq

    pieces = []
    for p in parts:
        names = set(pq.read_schema(p).names)
        piece = pq.read_table(p, read_dictionary=[c for c in CATEGORICAL[table] if c in names])
        pieces.append(piece)
    merged = pa.concat_tables(pieces, promote_options="permissive").unify_dictionaries()
    return merged.to_pandas()


def read_manifest(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / MANIFEST
    if not path.is_file():
        raise RunDirError(f"{run_dir}: not a lockprof run directory (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RunDirError(f"{path}: unreadable manifest: {exc}") from None
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise RunDirError(
            f"{run_dir}: run format {version!r} is not readable by this lockprof "
            f"(it reads format {FORMAT_VERSION})"
        )
    return manifest


class RunDir:
    """A run directory being written. The manifest says ``incomplete`` until :meth:`finish`,
    so a run killed at any point is never mistaken for a complete one."""

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = Path(path)
        if self.path.exists():
            raise RunDirError(f"{self.path} already exists; choose another --out")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=self.path.parent, prefix=f".{self.path.name}."))
        self.manifest = {"format_version": FORMAT_VERSION, **manifest, "status": "incomplete"}
        write_json(staging / MANIFEST, self.manifest)
        try:
            os.rename(staging, self.path)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
            raise RunDirError(f"{self.path} already exists; choose another --out") from None

    def update(self, **fields: Any) -> None:
        self.manifest.update(fields)
        write_json(self.path / MANIFEST, self.manifest)

    def finish(self, status: str, **fields: Any) -> None:
        self.update(status=status, **fields)

    def discard(self) -> None:
        """Remove a run that measured nothing, so no empty shell is left behind."""
        shutil.rmtree(self.path, ignore_errors=True)

    def has_measurements(self) -> bool:
        return any((self.path / "queries").glob("*.parquet"))
