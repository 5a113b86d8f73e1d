"""Loading run directories into tidy frames: the one loader the CLI, report and notebooks share, and the one
way several runs become one (:func:`combine`)."""

from __future__ import annotations

import functools
import operator
from collections.abc import Iterable, Sequence
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
        return self.on_disk("query_events")

    def on_disk(self, table: str) -> ParquetTable | None:
        """The Parquet parts of a lazy table while they have not been read into pandas, else None."""
        return self.__dict__.get(f"_{table}_disk")

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
    """Load one run directory, or several into one set of frames keyed by ``run_id`` (see :func:`combine`).

    ``query_events`` stays in its files (see :class:`Run`); their footers are checked here, so a
    damaged part is still refused on loading, naming the file."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    return combine([_load_one(Path(p)) for p in paths])


def _load_one(path: Path) -> Run:
    manifest = store.read_manifest(path)
    _check_measured(path, manifest)
    frames: dict[str, Any] = {}
    for table in run_tables():
        if table.lazy:
            parts = store.table_parts(path, table.name)
            store.check_parts(table.name, parts)
            frames[table.name] = ParquetTable(table.name, (Source(path, manifest.run_id, tuple(parts)),))
            continue
        frame = store.read_table(path, table.name)
        if frame.empty:
            frames[table.name] = _empty(table.name)
            continue
        if table.replica and "replica" not in frame:
            frame = frame.assign(replica="")  # written before --cluster: one server or embedded
        frames[table.name] = frame.assign(run_id=manifest.run_id)
    return Run(paths=[path], manifests=[manifest], **frames)


@dataclass(frozen=True)
class Relabel:
    """How one run's engine labels change when it is combined with others: suffixed, then renamed."""

    suffix: str = ""
    renames: tuple[tuple[str, str], ...] = ()

    def label(self, label: str) -> str:
        label += self.suffix
        return dict(self.renames).get(label, label)

    def frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        if "engine" not in frame or not (self.suffix or self.renames):
            return frame
        engine = frame["engine"].astype(str) + self.suffix if self.suffix else frame["engine"]
        return frame.assign(engine=engine.replace(dict(self.renames)) if self.renames else engine)


def combine(runs: Sequence[Run], relabels: Sequence[Relabel] | None = None) -> Run:
    """Several runs as one Run: every table's rows in run order (each keeps its ``run_id``), the manifests side
    by side. ``relabels`` (one per run) renames engines in the tables and the manifests alike, so that two runs
    whose engines share a label are not pooled. Lazy tables still in their files stay there."""
    relabels = list(relabels or [Relabel()] * len(runs))
    if len(runs) != len(relabels):
        raise ValueError(f"{len(runs)} runs but {len(relabels)} relabelings")
    if len(runs) == 1 and relabels[0] == Relabel():
        return runs[0]
    frames: dict[str, Any] = {}
    for table in run_tables():
        disk = [r.on_disk(table.name) for r in runs] if table.lazy else [None]
        if all(d is not None for d in disk):
            frames[table.name] = functools.reduce(
                operator.add, [d.relabeled(rl.suffix, rl.renames) for d, rl in zip(disk, relabels, strict=True)])
            continue
        parts = [rl.frame(getattr(r, table.name)) for r, rl in zip(runs, relabels, strict=True)]
        frames[table.name] = pd.concat([f for f in parts if not f.empty] or parts[:1], ignore_index=True)
    manifests = [m.relabeled({label: rl.label(label) for label in m.engine_labels})
                 for r, rl in zip(runs, relabels, strict=True) for m in r.manifests]
    return Run(paths=[p for r in runs for p in r.paths], manifests=manifests, **frames)


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
