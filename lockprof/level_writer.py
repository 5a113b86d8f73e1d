"""One level's parts, written whole or not at all: the one writer the worker and ``observe`` share.

A level leaves one Parquet part per table under the same part name. The ``levels`` row
goes last, so a level without it was never finished; and if anything fails before it (a
full disk, an interruption) every part already written is removed again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from lockprof import store
from lockprof.dirformat.tables import Table
from lockprof.samplers.base import AfterLevel, LevelSampler


class LevelWriter:
    """``with LevelWriter(run_dir, label, seq, keys) as parts: ...; parts.finish(level_row)``.

    ``keys`` are the level's keys (engine, schema, concurrency, repetition); a sampler's frame gets those
    its table declares."""

    def __init__(self, run_dir: Path, label: str, seq: int, keys: Mapping[str, Any]) -> None:
        self.run_dir = Path(run_dir)
        self.part = store.part_name(label, seq)
        self.keys = dict(keys)
        self.written: list[Path] = []

    def write(self, table: str, frame: pd.DataFrame, keys: Mapping[str, Any] | None = None) -> None:
        """One table's part; ``keys`` are added to every row (none: the frame is stored as it is)."""
        path = store.write_part(self.run_dir, table, self.part, frame.assign(**keys) if keys else frame)
        if path is not None:
            self.written.append(path)

    def sampled(self, samplers: Iterable[LevelSampler]) -> None:
        """Every frame the samplers took, each with the level keys its table declares."""
        for sampler in samplers:
            self.frames(sampler.frames())

    def frames(self, frames: Mapping[Table, pd.DataFrame]) -> None:
        """Each frame in its table, with the level keys the table declares."""
        for table, frame in frames.items():
            declared = set(table.names)
            self.write(table.name, frame, {k: v for k, v in self.keys.items() if k in declared and k not in frame})

    def after_level(self, found: Iterable[AfterLevel]) -> None:
        """What the after-level readers found: their tables, then their files beside them."""
        for got in found:
            self.frames(got.frames)
            if got.exports is not None:
                got.exports(self.run_dir, self.part)

    def finish(self, level_row: Mapping[str, Any]) -> None:
        """The ``levels`` row: last, so the level is whole."""
        self.write("levels", pd.DataFrame([dict(level_row)]))

    def __enter__(self) -> LevelWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:
            for path in self.written:
                path.unlink(missing_ok=True)
