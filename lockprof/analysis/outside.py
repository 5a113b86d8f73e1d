"""Lock time outside the measured queries: the process-wide counters minus what the run's own statements report.

``system.events`` counts every thread of the engine's process: the measured queries, the scenario's background
statements, the engine's own work and the samplers' queries. Each statement's own ProfileEvents
(``system.query_log``) count only its threads. The difference is lock time no per-query figure shows, yet an
exclusive hold in it stalls the queries all the same. It is only known where the run has per-query ProfileEvents
(:func:`lockprof.analysis.accounting.choose_source` gives ``query_log``); elsewhere the frames here are empty.

Who the outside holders are, where the run's data can tell. On chDB 26.9 the exclusive parts-lock holds outside
the queries follow the query log's flush interval (one acquisition per flush: each flush commits a part to
``system.query_log``; none at all without a query log, with thousands of parts and the samplers polling), and
merges of those parts add two more. So each sampler interval is classed by what else happened in it:

* ``merge``: a background merge finished in it (``MergeTotalMilliseconds`` or ``MergedInto*Parts`` counted);
* ``system_log_flush``: rows were inserted that no statement of the run inserted (``InsertedRows``); only
  decided in a window where the scenario inserted nothing and every background statement has its ProfileEvents;
  in chDB nothing but the engine's system logs inserts then (on a shared server another client could);
* ``unattributed``: anything else, and every interval of a window where the above cannot be decided.

A statement's own counters are placed in the sampler interval in which it started (the parts lock is taken while
planning), so the per-interval outside amount is approximate (a statement spanning two intervals moves its part to
the first); window totals are exact up to the window's edges, which follow the rule of
:func:`lockprof.analysis.accounting.window_totals`.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from lockprof.analysis.accounting import LEVEL, QUERY_LOG, WINDOW, choose_source
from lockprof.analysis.load import Run
from lockprof.analysis.memo import per_run
from lockprof.analysis.per_query import measured_statements, statement_matrix

KEYS = ["run_id", *WINDOW]  # one measurement window
# Counted when a merge finishes (its launch, ``Merge``, often shares an interval with the flush that caused it).
MERGE_EVENTS = ("MergeTotalMilliseconds", "MergedIntoWideParts", "MergedIntoCompactParts")
INSERTED = "InsertedRows"
SOURCE_TEXT = {"system_log_flush": "with a system-log flush", "merge": "with a background merge"}
# What an unattributed remainder could be. A thread pool's workers take its mutex between jobs, to finish one and
# pick the next (ClickHouse's ThreadPoolImpl worker loop counts that wait), when they run for no query.
CANDIDATES = {"global_thread_pool": "the pool's worker threads, which wait for its mutex between jobs, outside any "
                                    "query's counters",
              "local_thread_pool": "the pools' worker threads, which wait for the pool's mutex between jobs, outside "
                                   "any query's counters"}
GENERIC_CANDIDATES = ("the engine's own threads (system-log flushes, merges, cleanup, pool threads) or the samplers' "
                      "queries")

# When a sentence is worth saying: the outside part is at least a quarter of the process-wide figure (below that
# the queries' own counters explain most of it, and window edges and statement placement move the rest) and at
# least 100 µs per second of window (0.01% of the time: a lock held or waited for less is not worth a line).
MATERIAL_SHARE = 0.25
MATERIAL_US_PER_S = 100.0
# A source is named when it holds MATERIAL_SHARE of the outside part and, per interval, at least this many times
# what the other intervals hold: a wait that happens everywhere falls in flush intervals in proportion to their
# number, and that names nothing; nor can anything be named when every interval is of one class.
CONCENTRATION = 2.0

ROW_KEYS = [*LEVEL, "lock", "mode", "role"]
OUTSIDE_COLUMNS = [*ROW_KEYS, "sampled_s", "intervals",
                   "process_us", "queries_us", "background_us", "outside_us", "outside_share", "outside_us_per_s",
                   "process_acquisitions", "queries_acquisitions", "background_acquisitions", "outside_acquisitions",
                   "outside_acquisitions_per_s", "outside_us_per_acquisition", "intervals_with_outside",
                   "background_statements", "background_unlogged"]
SOURCE_COLUMNS = [*ROW_KEYS, "source", "sampled_s", "intervals", "source_s", "outside_us", "outside_us_per_s",
                  "outside_acquisitions", "outside_acquisitions_per_s", "outside_us_per_acquisition",
                  "intervals_with_outside"]


@per_run
def outside_queries(run: Run) -> pd.DataFrame:
    """Per (engine, schema, concurrency, lock, mode, role wait/hold) over the measured windows: the process-wide
    total (µs, from ``events``), the measured queries' own, the background statements' own (those with
    ProfileEvents; ``background_unlogged`` counts the others), and the rest, outside them: in total, per second
    of sampled window, acquisitions per second and µs per acquisition where the engine counts acquisitions
    (NaN where not), and in how many sampler intervals there was any."""
    frame, own = _prepared(run)
    if frame.empty:
        return pd.DataFrame(columns=OUTSIDE_COLUMNS)
    out = _sum_levels(frame, [])
    background = own[(own["kind"] == "background") & (own["interval"] >= 0)]
    counts = background.assign(unlogged=~background["logged"]).groupby(LEVEL, as_index=False).agg(
        background_statements=("logged", "size"), background_unlogged=("unlogged", "sum"))
    out = out.merge(counts, on=LEVEL, how="left")
    for column in ("background_statements", "background_unlogged"):
        out[column] = out[column].fillna(0).astype(int)
    out["outside_share"] = out["outside_us"] / out["process_us"].where(out["process_us"] > 0)
    return out[OUTSIDE_COLUMNS].sort_values(ROW_KEYS, ignore_index=True)


@per_run
def outside_sources(run: Run) -> pd.DataFrame:
    """:func:`outside_queries`' outside part split by the class of sampler interval it fell in (``source``:
    ``system_log_flush``, ``merge``, ``unattributed``; see the module docstring), with how many intervals
    (``intervals``) and seconds (``source_s``) of the level's ``sampled_s`` are of that class. Rates are per
    second of the whole level, so the sources of a row of :func:`outside_queries` add up to it."""
    frame, _ = _prepared(run)
    if frame.empty:
        return pd.DataFrame(columns=SOURCE_COLUMNS)
    out = _sum_levels(frame, ["source"])
    return out[SOURCE_COLUMNS].sort_values([*ROW_KEYS, "source"], ignore_index=True)


def outside_sentences(run: Run, only: tuple[str, str] | None = None) -> list[str]:
    """Plain sentences, one per engine, schema, lock, mode and role whose outside part is material
    (``MATERIAL_SHARE`` of the process-wide figure and ``MATERIAL_US_PER_S``) at some level: the level where it is
    largest per second, its rate and size, the process-wide and per-query figures that disagree by it, where the
    run can tell which intervals it fell in, and the range over the other material levels. ``only`` keeps one
    (mode, role), e.g. ("exclusive", "hold")."""
    totals = outside_queries(run)
    if totals.empty:
        return []
    material = totals[(totals["outside_share"] >= MATERIAL_SHARE) & (totals["outside_us_per_s"] >= MATERIAL_US_PER_S)]
    if only is not None:
        material = material[(material["mode"] == only[0]) & (material["role"] == only[1])]
    sources = outside_sources(run)
    lines = []
    for _, group in material.groupby([*ROW_KEYS[:2], "lock", "mode", "role"], sort=True):
        group = group.sort_values("concurrency")
        top = group.loc[group["outside_us_per_s"].idxmax()]
        mine = (sources[ROW_KEYS] == top[ROW_KEYS]).all(axis=1)
        text = _sentence(top, sources[mine].set_index("source"))
        others = group[group["concurrency"] != top["concurrency"]]
        if not others.empty:
            text += f"; at c={', '.join(str(c) for c in others['concurrency'])} too: {_range(group, top)}"
        lines.append(text + ".")
    return lines


def _sentence(row: pd.Series, split: pd.DataFrame) -> str:
    where = f"{row['engine']} / {row['schema']} c={row['concurrency']}"
    name = row["lock"].replace("_", " ")
    noun = "holds" if row["role"] == "hold" else "waits"
    what = f"{row['mode']} {name}-lock {noun}" if " " not in name else f"{name} lock {noun} ({row['mode']})"
    background = (f"background statements {_time(row['background_us'])}" if row["background_statements"]
                  else "no background statements")
    if row["background_unlogged"]:
        background += f" ({row['background_unlogged']} without ProfileEvents, not counted)"
    seen = f"in {row['intervals_with_outside']} of {row['intervals']} sampler intervals"
    if _counted(row):
        text = (f"{where}: {what} outside the measured queries: {row['outside_acquisitions_per_s']:.1f} per second, "
                f"{_time(row['outside_us_per_acquisition'])} each, {seen} (process-wide {_time(row['process_us'])}, "
                f"queries {_time(row['queries_us'])}, {background})")
    else:
        text = (f"{where}: {what}: process-wide {_time(row['process_us'])} against {_time(row['queries_us'])} in the "
                f"measured queries' own ProfileEvents ({background}): {_time(row['outside_us'])} "
                f"({row['outside_share']:.0%}) outside the measured queries, {_time(row['outside_us_per_s'])} per "
                f"second, {seen}; the per-query figures leave it out (it was counted in threads working for no "
                f"measured statement)")
    return text + "; " + _source_text(row, split)


def _counted(row: pd.Series) -> bool:
    """Whether the sentence can say "N per second, x each": a hold whose acquisitions the engine counts."""
    return row["role"] == "hold" and row["outside_acquisitions"] > 0


def _source_text(row: pd.Series, split: pd.DataFrame) -> str:
    """Which intervals the outside part fell in, when a class of them holds it (see CONCENTRATION), else what it
    could be."""
    parts = []
    for source, label in SOURCE_TEXT.items():
        if source not in split.index or not row["outside_us"] > 0:
            continue
        s = split.loc[source]
        share = s["outside_us"] / row["outside_us"]
        rest = row["intervals"] - s["intervals"]
        if share < MATERIAL_SHARE or rest <= 0 or s["intervals"] <= 0:
            continue
        if s["outside_us"] / s["intervals"] < CONCENTRATION * max(row["outside_us"] - s["outside_us"], 0.0) / rest:
            continue
        rate = (f"{s['outside_acquisitions_per_s']:.1f} per second, {_time(s['outside_us_per_acquisition'])} each"
                if _counted(row) and s["outside_acquisitions"] > 0 else _time(s["outside_us"]))
        where = "the sampler interval" if s["intervals"] == 1 else f"the {s['intervals']} sampler intervals"
        parts.append(f"{share:.0%} of it in {where} {label} ({rate})")
    if parts:
        return "; ".join(parts)
    return f"not attributed: it could be {CANDIDATES.get(row['lock'], GENERIC_CANDIDATES)}"


def _range(group: pd.DataFrame, top: pd.Series) -> str:
    """The spread over the material levels of one lock, mode and role."""
    if _counted(top):
        per_s, each = group["outside_acquisitions_per_s"], group["outside_us_per_acquisition"]
        return (f"{per_s.min():.1f}–{per_s.max():.1f} per second, {_time(each.min())}–{_time(each.max())} each")
    share = group["outside_share"]
    return f"{share.min():.0%}–{share.max():.0%} outside, {_time(group['outside_us_per_s'].min())}–" \
           f"{_time(group['outside_us_per_s'].max())} per second"


def _time(us: float) -> str:
    if us is None or (isinstance(us, float) and math.isnan(us)):
        return "n/a"
    if abs(us) >= 1e6:
        return f"{us / 1e6:.1f} s"
    if abs(us) >= 1e3:
        return f"{us / 1e3:.1f} ms"
    return f"{us:.0f} µs" if abs(us) >= 10 else f"{us:.1f} µs"


@per_run
def _prepared(run: Run) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per window, sampler interval, lock, mode and role wait/hold: the process-wide amount in µs and
    acquisitions, the queries' and background statements' own placed in the interval where each started, and the
    interval's source class; the statements with their own counters). Shared by the public functions, which
    must not change them."""
    nothing = (pd.DataFrame(), pd.DataFrame())
    catalog = run.locks[["engine", "event", "lock", "mode", "role", "to_us"]].drop_duplicates(["engine", "event"])
    if choose_source(run) != QUERY_LOG or catalog.empty or run.events.empty:
        return nothing
    wanted = sorted({*catalog["event"].astype(str), INSERTED, *MERGE_EVENTS})
    events = _window_events(run, wanted)
    if events.empty:
        return nothing
    # One row per interval, the counters as columns (a cluster's replicas, read in one poll, share it).
    wide = events.pivot_table(index=[*KEYS, "t_s"], columns="event", values="delta", aggfunc="sum",
                              fill_value=0.0).reindex(columns=wanted, fill_value=0.0)
    wide.insert(0, "interval_s", events.groupby([*KEYS, "t_s"], observed=True)["interval_s"].max())
    wide = wide.reset_index()
    wide["interval"] = np.arange(len(wide))
    own = _own_counters(run, wanted, wide)
    placed = {role: _placed(own[own["kind"] == role], wanted, len(wide)) for role in ("query", "background")}
    wide["source"] = _classify(wide, placed, own)
    rows = []
    for (engine, lock, mode), group in catalog.groupby(["engine", "lock", "mode"], sort=True):
        counted = group[group["role"] == "count"]
        in_engine = (wide["engine"].astype(str) == str(engine)).to_numpy()
        if not in_engine.any():
            continue
        for role in ("wait", "hold"):
            timed = group[group["role"] == role]
            if timed.empty:
                continue
            amounts = {side: _amount(matrix, timed, wanted) for side, matrix in
                       (("process", wide[wanted].to_numpy(dtype=float)), ("queries", placed["query"]),
                        ("background", placed["background"]))}
            counts = {side: (_amount(matrix, counted, wanted) if not counted.empty else np.full(len(wide), np.nan))
                      for side, matrix in (("process", wide[wanted].to_numpy(dtype=float)),
                                           ("queries", placed["query"]), ("background", placed["background"]))}
            part = wide.loc[in_engine, [*KEYS, "t_s", "interval_s", "source"]].copy()
            part["lock"], part["mode"], part["role"] = lock, mode, role
            for side in ("process", "queries", "background"):
                part[f"{side}_us"] = amounts[side][in_engine]
                part[f"{side}_acquisitions"] = counts[side][in_engine]
            rows.append(part)
    if not rows:
        return nothing
    out = pd.concat(rows, ignore_index=True)
    out["outside_us"] = out["process_us"] - out["queries_us"] - out["background_us"]
    out["outside_acquisitions"] = (out["process_acquisitions"] - out["queries_acquisitions"]
                                   - out["background_acquisitions"])
    return out, own


def _window_events(run: Run, wanted: list[str]) -> pd.DataFrame:
    """Sampler deltas of the wanted counters in the measured windows: an interval belongs to the window holding
    its middle (the rule of ``accounting._from_events``)."""
    events = _keyed(run.events[run.events["event"].astype(str).isin(wanted)])
    windows = _keyed(run.levels)[[*KEYS, "measure_start_s", "measure_end_s"]].drop_duplicates(KEYS)
    rows = events.merge(windows, on=KEYS, how="inner")
    middle = rows["t_s"] - rows["interval_s"] / 2.0
    rows = rows[(middle >= rows["measure_start_s"]) & (middle <= rows["measure_end_s"])]
    # A cluster's replicas are read in one poll: their deltas share the interval.
    return rows.assign(event=rows["event"].astype(str), delta=rows["delta"].astype(float))


def _own_counters(run: Run, wanted: list[str], wide: pd.DataFrame) -> pd.DataFrame:
    """The run's successful statements of the sampled windows (queries and background), each with its own wanted
    counters (``wanted`` columns), whether it has any, and the interval it started in (-1: no interval)."""
    statements = _keyed(measured_statements(run)).reset_index(drop=True)
    names, full = statement_matrix(run)  # one pass over the files, shared with the exclusive holds
    matrix = full[:, [names.index(e) for e in wanted]]
    own = statements[[*KEYS, "role", "start_s"]].copy()
    own["kind"] = np.where(own["role"] == "query", "query", "background")
    own["logged"] = (matrix != 0).any(axis=1)
    own["interval"] = _interval_of(own, wide)
    return pd.concat([own.reset_index(drop=True), pd.DataFrame(matrix, columns=wanted)], axis=1)


def _keyed(frame: pd.DataFrame) -> pd.DataFrame:
    """A run's table with a ``run_id`` (a frame built by hand may lack it: one run)."""
    return frame if "run_id" in frame else frame.assign(run_id="")


def _interval_of(own: pd.DataFrame, wide: pd.DataFrame) -> np.ndarray:
    """The interval of its window in which each statement started (the first or last one when it started outside
    them), or -1 when its window has no sampled interval."""
    out = np.full(len(own), -1, dtype=np.int64)
    start = own["start_s"].astype(float).to_numpy()
    by_window = {k: g for k, g in wide.groupby(KEYS, sort=False)}
    for key, positions in own.groupby(KEYS, sort=False).indices.items():
        intervals = by_window.get(key)
        if intervals is None:
            continue
        intervals = intervals.sort_values("t_s")
        # An interval ends when its snapshot was read: a statement starting then is counted in the next one.
        k = np.searchsorted(intervals["t_s"].to_numpy(), start[positions], side="right")
        out[positions] = intervals["interval"].to_numpy()[np.clip(k, 0, len(intervals) - 1)]
    return out


def _placed(own: pd.DataFrame, wanted: list[str], n_intervals: int) -> np.ndarray:
    """Statements' own counters summed per interval: ``out[interval, event]``."""
    out = np.zeros((n_intervals, len(wanted)))
    placed = own[own["interval"] >= 0]
    np.add.at(out, placed["interval"].to_numpy(), placed[wanted].to_numpy(dtype=float))
    return out


def _classify(wide: pd.DataFrame, placed: dict[str, np.ndarray], own: pd.DataFrame) -> np.ndarray:
    """Each interval's source class (see the module docstring)."""
    merged = wide[list(MERGE_EVENTS)].sum(axis=1).to_numpy() > 0
    inserted = wide[INSERTED].to_numpy(dtype=float)
    # Windows where the scenario's own inserts are known to be none: no statement inserted a row, and every
    # background statement has its ProfileEvents (a write without them would be invisible).
    background = own[own["kind"] == "background"]
    writes = own.groupby(KEYS)[INSERTED].sum()
    unknown = background[~background["logged"]].groupby(KEYS).size()
    key = pd.MultiIndex.from_frame(wide[KEYS])
    decidable = (writes.reindex(key).fillna(0.0).to_numpy() == 0) & (unknown.reindex(key).fillna(0).to_numpy() == 0)
    return np.where(merged, "merge", np.where(decidable & (inserted > 0), "system_log_flush", "unattributed"))


def _amount(matrix: np.ndarray, events: pd.DataFrame, wanted: list[str]) -> np.ndarray:
    """Per interval: the given catalog events summed, times to-µs for timings (a count stays a count)."""
    column = {name: i for i, name in enumerate(wanted)}
    out = np.zeros(matrix.shape[0])
    for _, ev in events.iterrows():
        factor = 1.0 if ev["role"] == "count" else float(ev["to_us"])
        out += matrix[:, column[str(ev["event"])]] * factor
    return out


def _sum_levels(frame: pd.DataFrame, extra: list[str]) -> pd.DataFrame:
    """Per-interval rows summed per level, lock, mode, role (and ``extra``), with rates per second of the level."""
    level = frame.groupby(ROW_KEYS, as_index=False).agg(sampled_s=("interval_s", "sum"))
    frame = frame.assign(any_outside=frame["outside_us"] > 0)
    out = frame.groupby([*ROW_KEYS, *extra], as_index=False).agg(
        intervals=("t_s", "size"), source_s=("interval_s", "sum"),
        process_us=("process_us", "sum"), queries_us=("queries_us", "sum"), background_us=("background_us", "sum"),
        outside_us=("outside_us", "sum"), process_acquisitions=("process_acquisitions", _sum_or_nan),
        queries_acquisitions=("queries_acquisitions", _sum_or_nan),
        background_acquisitions=("background_acquisitions", _sum_or_nan),
        outside_acquisitions=("outside_acquisitions", _sum_or_nan), intervals_with_outside=("any_outside", "sum"))
    out = out.merge(level, on=ROW_KEYS, how="left")
    out["outside_us_per_s"] = out["outside_us"] / out["sampled_s"]
    out["outside_acquisitions_per_s"] = out["outside_acquisitions"] / out["sampled_s"]
    out["outside_us_per_acquisition"] = out["outside_us"] / out["outside_acquisitions"].where(
        out["outside_acquisitions"] > 0)
    out["intervals_with_outside"] = out["intervals_with_outside"].astype(int)
    return out


def _sum_or_nan(values: pd.Series) -> float:
    return float(values.sum()) if values.notna().any() else math.nan
