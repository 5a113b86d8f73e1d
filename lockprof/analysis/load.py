"""Loading run directories into tidy frames: the one loader the CLI, report and notebooks share."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lockprof import store
from lockprof.analysis.columnar import ParquetTable, Source
from lockprof.dirformat import Manifest
from lockprof.dirformat import tables as declared
from lockprof.errors import RunDirError


@dataclass
class Run:
    """One run directory (or several, concatenated with a ``run_id`` column).

    Every table is a pandas frame, as analysts and notebooks use them. ``query_events`` (dozens of
    rows per query) is the exception in how it is held: a run loaded from disk leaves it in its
    Parquet files until something reads the attribute, and the analysis aggregates it there
    (:mod:`lockprof.analysis.columnar`), so the summary and the report never hold it whole.
    Assigning a frame to it (or building a Run from frames) makes the analysis use that frame.
    """

    paths: list[Path]
    manifests: list[Manifest]
    queries: pd.DataFrame
    levels: pd.DataFrame
    events: pd.DataFrame
    metrics: pd.DataFrame
    query_events: pd.DataFrame = field(repr=False)  # a property below: read from disk on first access
    locks: pd.DataFrame
    driver: pd.DataFrame
    driver_stacks: pd.DataFrame
    stacks: pd.DataFrame  # server engines only: folded stacks from system.trace_log
    # Results of the analysis functions, computed once per Run (see lockprof.analysis.memo).
    cache: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.manifests = [Manifest.of(m) for m in self.manifests]  # mappings too, as tests build runs

    def query_events_on_disk(self) -> ParquetTable | None:
        """The Parquet parts of ``query_events`` while they have not been read into pandas, else None."""
        return self.__dict__.get("_query_events_disk")

    @property
    def manifest(self) -> Manifest:
        """The manifest of the first (usually only) run."""
        return self.manifests[0]

    @property
    def complete(self) -> bool:
        return all(m.complete for m in self.manifests)

    def measured(self, columns: list[str] | None = None) -> pd.DataFrame:
        """Queries of the measurement phase, background statements excluded (only ``columns``, if given:
        a million queries' rows are cheap to filter in a few numeric columns, not in all of them)."""
        q = self.queries
        keep = (q["phase"] == "measure") & (q["role"] == "query")
        return q[keep] if columns is None else q.loc[keep, [c for c in columns if c in q]]

    def partition_keys(self) -> dict[str, str]:
        """schema -> partition key, as the engine reported it."""
        keys: dict[str, str] = {}
        for m in self.manifests:
            for schema, key in m.partition_keys().items():
                keys.setdefault(schema, key)
        return keys


def load_run(paths: str | Path | Iterable[str | Path]) -> Run:
    """Load one run directory, or several into one set of frames keyed by ``run_id``.

    ``query_events`` stays in its files (see :class:`Run`); their footers are checked here, so a
    damaged part is still refused on loading, naming the file."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    manifests = [store.read_manifest(p) for p in paths]
    tables: dict[str, list[pd.DataFrame]] = {t.name: [] for t in run_tables() if not t.lazy}
    sources = []
    for path, manifest in zip(paths, manifests):
        _check_measured(path, manifest)
        for table in tables:
            frame = store.read_table(path, table)
            if not frame.empty:
                if table in REPLICA_TABLES and "replica" not in frame:
                    frame = frame.assign(replica="")  # written before --cluster: one server or embedded
                tables[table].append(frame.assign(run_id=manifest.run_id))
        parts = store.table_parts(path, "query_events")
        store.check_parts("query_events", parts)
        sources.append(Source(run_dir=path, run_id=manifest.run_id, parts=tuple(parts)))
    frames: dict[str, Any] = {t: (pd.concat(parts, ignore_index=True) if parts else _empty(t))
                              for t, parts in tables.items()}
    frames["query_events"] = ParquetTable("query_events", tuple(sources))
    return Run(paths=paths, manifests=manifests, **frames)


def _check_measured(path: Path, manifest: Manifest) -> None:
    """A run directory keeps a ``levels`` part for every level it measured, and ``queries`` beside any level that
    counted queries: without them every table would come out empty or NaN and still look like a result."""
    if not store.table_parts(path, "levels"):
        status = "" if manifest.complete else f" (the run is {manifest.status})"
        raise RunDirError(f"{path}: damaged run directory: no levels/ parts, so it holds no measured level{status}")
    if not store.table_parts(path, "queries"):
        counted = store.read_table(path, "levels").get("queries", pd.Series(dtype=float)).fillna(0).sum()
        if counted > 0:
            raise RunDirError(f"{path}: damaged run directory: its levels counted {int(counted)} queries "
                              "but it has no queries/ parts")


def _get_query_events(run: Run) -> pd.DataFrame:
    frame = run.__dict__.get("_query_events")
    if frame is None:
        disk = run.query_events_on_disk()
        frame = disk.load() if disk is not None else _empty("query_events")
        run.__dict__["_query_events"] = frame
        run.__dict__["_query_events_disk"] = None  # from now on the analysis uses the frame the analyst sees
    return frame


def _set_query_events(run: Run, value: pd.DataFrame | ParquetTable) -> None:
    if isinstance(value, ParquetTable):
        run.__dict__["_query_events"], run.__dict__["_query_events_disk"] = None, value
    else:
        run.__dict__["_query_events"], run.__dict__["_query_events_disk"] = value, None


# Installed after the dataclass is made: ``Run(query_events=...)`` and ``run.query_events = frame`` go
# through the setter, reading the attribute through the getter.
Run.query_events = property(_get_query_events, _set_query_events)  # type: ignore[assignment]

def run_tables() -> list[declared.Table]:
    """The declared tables a :class:`Run` holds: all of lockprof's own (a test checks it). A table a sampler
    declares for itself (:func:`lockprof.dirformat.register_table`) is read where it is used, with
    :func:`lockprof.store.read_table`."""
    fields = Run.__dataclass_fields__
    return [t for t in declared.tables() if t.name in fields]


# Tables load_run leaves in their files until asked for.
LAZY_TABLES = tuple(t.name for t in declared.tables() if t.lazy)

# Sampled tables that say which replica a row came from ('' on one server or the embedded engine).
REPLICA_TABLES = tuple(t.name for t in declared.tables() if t.replica)


def _empty(table: str) -> pd.DataFrame:
    return declared.table(table).empty()
