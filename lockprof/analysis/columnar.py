"""The per-query ProfileEvents aggregated where they live: in the run's Parquet files, never whole in pandas.

A run keeps dozens of ProfileEvents per query (``query_events``, ~66 long-format rows per query:
66 M rows for a million queries). Every figure lockprof prints from them is a sum per measurement
window and event (see :func:`lockprof.analysis.accounting.window_totals`), a table of a few
thousand numbers. So the files are read one part at a time and folded into that table, and only
the table reaches pandas; :attr:`Run.query_events <lockprof.analysis.load.Run.query_events>` is
read whole only when someone asks for it (a notebook), and the summary never does.

Why pyarrow and numpy, not chDB, although chDB reads Parquet in place: chDB is the engine
under test, and it is one engine per process (one data path; the test suite opens it once per
test process, a notebook may open one beside its analysis). An analysis with its own chDB session
would share that engine with whatever else the process runs, and the fast test layer, which
analyses synthetic runs, forbids importing chDB at all (tests/engine_guard). The join that
matters is cheap without an engine anyway: each part stores ``query_id`` and ``event``
dictionary-encoded, so matching a row to its window is one hash lookup per *distinct* id in the
row group's dictionary plus an integer gather per row, and the sum is a ``numpy.bincount``.
Measured on a synthetic million-query run: see docs/performance.md.

Sums are ``float64`` accumulated part by part. ProfileEvents are integer counters, so while a
window's total stays below 2**53 every sum is exact and equal, bit for bit, to summing the rows
of one pandas frame in any order (the in-memory path of :mod:`lockprof.analysis.accounting`).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lockprof import store
from lockprof.errors import RunDirError

# Rows folded at once: bounded memory per step whatever the size of a part (~40 MB of codes and values).
BATCH_ROWS = 2_000_000
# Row groups (up to ~1 M rows each as pyarrow writes them) decoded ahead of the one being folded.
LOOKAHEAD = 3


@dataclass(frozen=True)
class Source:
    """The parts of one table of one run directory, and how ``load_run`` labels their rows."""

    run_dir: Path
    run_id: str
    parts: tuple[Path, ...]
    engine_suffix: str = ""  # "@run_id" where several runs with the same engine labels are loaded together
    engine_renames: tuple[tuple[str, str], ...] = ()  # then (old, new) engine labels, as a comparison relabels

    def engine(self, label: str) -> str:
        """The engine label a row of this source carries once loaded."""
        label += self.engine_suffix
        for old, new in self.engine_renames:
            label = new if label == old else label
        return label


@dataclass(frozen=True)
class ParquetTable:
    """A run table left in its Parquet files (one or several runs, in load order)."""

    table: str
    sources: tuple[Source, ...]

    @property
    def empty(self) -> bool:
        return not any(s.parts for s in self.sources)

    def load(self) -> pd.DataFrame:
        """The whole table as ``load_run`` always built it: every part, a ``replica`` and a ``run_id`` column."""
        from lockprof.analysis.load import REPLICA_TABLES, _empty

        frames = []
        for s in self.sources:
            frame = store.read_parts(self.table, list(s.parts))
            if frame.empty:
                continue
            if self.table in REPLICA_TABLES and "replica" not in frame:
                frame = frame.assign(replica="")  # written before --cluster: one server or embedded
            frame = frame.assign(run_id=s.run_id)
            if s.engine_suffix and "engine" in frame:
                frame = frame.assign(engine=frame["engine"].astype(str) + s.engine_suffix)
            for old, new in s.engine_renames:
                if "engine" in frame:
                    frame = frame.assign(engine=frame["engine"].replace({old: new}))
            frames.append(frame)
        return pd.concat(frames, ignore_index=True) if frames else _empty(self.table)

    def distinct(self, column: str) -> set[str]:
        """The distinct values of a string column, from the files' statistics where they settle it."""
        out: set[str] = set()
        for s in self.sources:
            for part in s.parts:
                out |= {s.engine(v) if column == "engine" else v for v in _distinct(part, column)}
        return out

    def relabeled(self, suffix: str = "", renames: tuple[tuple[str, str], ...] = ()) -> ParquetTable:
        """The same files, their engine labels suffixed and then renamed on reading."""
        return dataclasses.replace(self, sources=tuple(
            dataclasses.replace(s, engine_suffix=s.engine_suffix + suffix, engine_renames=s.engine_renames + renames)
            for s in self.sources))

    def __add__(self, other: ParquetTable) -> ParquetTable:
        """Two runs' files as one table, in order."""
        return ParquetTable(self.table, self.sources + other.sources)

    def batches(self, columns: list[str], dictionary: tuple[str, ...] = ()
                ) -> Iterator[tuple[Path, dict[str, object]]]:
        """(part, {column: pyarrow array}) for every batch of every part in order, the ``dictionary`` columns
        read dictionary-encoded. Row groups are decoded ahead in threads (pyarrow releases the GIL) while the caller
        folds the previous ones, never more than :data:`LOOKAHEAD` at a time."""
        units = [(part, g) for s in self.sources for part in s.parts for g in range(_row_groups(part))]
        if not units:
            return
        with ThreadPoolExecutor(max_workers=min(LOOKAHEAD, os.cpu_count() or 1)) as pool:
            pending: deque[tuple[Path, Future]] = deque()
            queue = iter(units)
            for part, g in itertools.islice(queue, LOOKAHEAD):
                pending.append((part, pool.submit(_read_row_group, part, g, columns, dictionary)))
            while pending:
                part, future = pending.popleft()
                try:
                    table = future.result()
                except Exception as exc:  # a damaged page; pyarrow's errors do not name the file
                    for _, other in pending:
                        other.cancel()
                    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    raise RunDirError(f"{part}: damaged run file: {first}") from None
                for nxt in itertools.islice(queue, 1):
                    pending.append((nxt[0], pool.submit(_read_row_group, *nxt, columns, dictionary)))
                for batch in table.to_batches(max_chunksize=BATCH_ROWS):
                    yield part, {c: batch.column(c) for c in columns}


def _row_groups(part: Path) -> int:
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(part).metadata.num_row_groups
    except (OSError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RunDirError(f"{part}: damaged run file: {first}") from None


def _read_row_group(part: Path, group: int, columns: list[str], dictionary: tuple[str, ...]) -> object:
    import pyarrow.parquet as pq

    return pq.ParquetFile(part, read_dictionary=list(dictionary)).read_row_group(group, columns=columns)


def _distinct(part: Path, column: str) -> set[str]:
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(part).metadata
    index = meta.schema.names.index(column) if column in meta.schema.names else -1
    if index < 0:
        return set()
    values: set[str] = set()
    for g in range(meta.num_row_groups):
        stats = meta.row_group(g).column(index).statistics
        if stats is None or not stats.has_min_max or stats.min != stats.max or stats.null_count:
            break  # not settled by the statistics: read the column
        values.add(str(stats.min))
    else:
        return values
    return {str(v) for v in pq.read_table(part, columns=[column]).column(column).unique().to_pylist()
            if v is not None}


def event_sums(table: ParquetTable, ids: pd.Index, window: np.ndarray, n_windows: int,
               own_events: list[str] | None = None) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray]:
    """Fold the ProfileEvents of the queries ``ids`` (unique) into (sums per window and event, event names,
    whether each id has a row): ``sums[w, e]`` is the sum of event ``e`` over the rows whose query_id is an
    id of window ``w`` (``window[i]`` is the window of ``ids[i]``); rows of other ids, and rows without an
    id or an event name, are left out. In the same pass, the fourth result holds each id's own values of
    ``own_events`` (as :func:`query_matrix`; ids whose window is the last, ``n_windows``, count only there)."""
    names: dict[str, int] = {}
    sums = np.zeros((n_windows + 1, 0))  # the last row collects the rows left out
    own = np.zeros((len(ids), len(own_events or ())))
    wanted = pd.Index(own_events or [])
    repeats = has_replicas(table)
    logged = np.zeros(len(ids), dtype=bool)
    trash = n_windows
    window = np.append(window, trash).astype(np.int64)  # position -1 (an id not measured) -> the trash row
    for _, cols in table.batches(["query_id", "event", "value"], dictionary=("query_id", "event")):
        qid, ev, value = cols["query_id"], cols["event"], cols["value"]
        # One lookup per distinct id of the batch (its dictionary), then per row one gather and a bincount.
        position = ids.get_indexer(qid.dictionary.to_pandas())
        entry_window = np.append(window[position], trash)  # a null id (code -1) lands in the trash row too
        q_codes, e_codes = _codes(qid), _codes(ev)
        if own.shape[1]:
            fold_rows(own, position, q_codes, wanted.get_indexer(ev.dictionary.to_pandas()), e_codes,
                      value.to_numpy(zero_copy_only=False), repeats)
        row_window = entry_window[q_codes]
        counted = q_codes
        if ev.null_count:  # rows without an event name: nobody's
            missing = e_codes < 0
            row_window[missing] = trash
            e_codes = np.where(missing, 0, e_codes)
            counted = q_codes[~missing]
        event_names = [str(x) for x in ev.dictionary.to_pylist()]
        k = max(len(event_names), 1)
        # Which ids have a row: the dictionary entries rows use (the extra last slot is a null id's),
        # of those, the measured ones.
        used = np.zeros(len(position) + 1, dtype=bool)
        used[counted] = True
        logged[position[used[:-1] & (position >= 0)]] = True
        row_window *= k  # the key window * k + event, in place: these arrays are as long as the batch
        row_window += e_codes
        batch = np.bincount(row_window, weights=value.to_numpy(zero_copy_only=False),
                            minlength=(n_windows + 1) * k).reshape(n_windows + 1, k)[:, :len(event_names)]
        for name in event_names:
            names.setdefault(name, len(names))
        if len(names) > sums.shape[1]:
            sums = np.pad(sums, ((0, 0), (0, len(names) - sums.shape[1])))
        target = np.fromiter((names[n] for n in event_names), dtype=np.int64, count=len(event_names))
        np.add.at(sums.T, target, batch.T)  # add.at: a dictionary may (rarely) hold a name twice
    return sums[:n_windows], list(names), logged, own


def _codes(array: object) -> np.ndarray:
    """A dictionary array's indices; a null (no id or no name) becomes a code that matches nothing."""
    indices = array.indices  # type: ignore[attr-defined]
    if indices.null_count:
        import pyarrow.compute as pc

        out = indices.fill_null(0).to_numpy().astype(np.int64)
        out[pc.is_null(indices).to_numpy(zero_copy_only=False)] = -1
        return out
    return indices.to_numpy()


def query_matrix(table: ParquetTable, ids: pd.Index, events: list[str]) -> np.ndarray:
    """Each query's own counters: ``out[i, j]`` is event ``events[j]`` summed over the rows of query ``ids[i]``
    (0 where it has none). Only the listed events are kept, so a million queries cost ``len(events)`` floats
    each, not one per ProfileEvent the engine logs."""
    out = np.zeros((len(ids), len(events)))
    wanted = pd.Index(events)
    repeats = has_replicas(table)
    for _, cols in table.batches(["query_id", "event", "value"], dictionary=("query_id", "event")):
        qid, ev, value = cols["query_id"], cols["event"], cols["value"]
        fold_rows(out, ids.get_indexer(qid.dictionary.to_pandas()), _codes(qid),
                  wanted.get_indexer(ev.dictionary.to_pandas()), _codes(ev), value.to_numpy(zero_copy_only=False),
                  repeats)
    return out


def frame_matrix(frame: pd.DataFrame, ids: pd.Index, events: list[str]) -> np.ndarray:
    """What :func:`query_matrix` computes from the files, from a ``query_events`` frame in memory."""
    out = np.zeros((len(ids), len(events)))
    if frame.empty:
        return out
    query_id, event = pd.Categorical(frame["query_id"].astype(str)), pd.Categorical(frame["event"].astype(str))
    fold_rows(out, ids.get_indexer(query_id.categories), np.asarray(query_id.codes),
              pd.Index(events).get_indexer(event.categories), np.asarray(event.codes),
              frame["value"].to_numpy(dtype=float))
    return out


def has_replicas(table: ParquetTable) -> bool:
    """Whether the table's rows come from several replicas (a cluster), so a query can have an event twice."""
    return len(table.distinct("replica")) > 1


def fold_rows(out: np.ndarray, id_position: np.ndarray, id_codes: np.ndarray, event_position: np.ndarray,
              event_codes: np.ndarray, values: np.ndarray, repeats: bool = True) -> None:
    """Add dictionary-encoded rows into ``out[query, event]``: a row's query is ``id_position[id_codes[row]]``
    and its event ``event_position[event_codes[row]]``; a code of -1 (null) or a position of -1 (a query or an
    event not asked for) drops the row. ``repeats``: whether a query may have two rows of one event (on a
    cluster, one per replica); without, a plain indexed add does it, several times faster than ``add.at``."""
    query = np.append(id_position, -1)[id_codes]
    event = np.append(event_position, -1)[event_codes]
    keep = (query >= 0) & (event >= 0)
    flat = query[keep].astype(np.int64) * out.shape[1] + event[keep]
    cells = out.reshape(-1)  # a view: ``out`` is made C-contiguous by its callers
    if repeats:
        np.add.at(cells, flat, values[keep])
    else:
        cells[flat] += values[keep]
