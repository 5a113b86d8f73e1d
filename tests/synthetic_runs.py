"""Synthetic runs with known answers, built as the same frames `load_run` returns.

Each level is described by its queries, window, per-query parts-lock hold and wait, and
latency; the frames then hold exactly those numbers, so the analysis must give them back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lockprof import store
from lockprof.analysis.load import Run, _empty
from lockprof.locks import catalog

LOCK_EVENTS = {
    "exclusive": ("PartsLockHoldMicroseconds", "PartsLockWaitMicroseconds", "PartsLocks"),
    "shared": ("SharedPartsLockHoldMicroseconds", "SharedPartsLockWaitMicroseconds", "SharedPartsLocks"),
}


@dataclass
class Level:
    schema: str
    concurrency: int
    queries: int
    window_s: float
    hold_us: float = 0.0
    wait_us: float = 0.0
    latency_ms: float = 10.0
    active_parts: int = 100
    mode: str = "exclusive"
    # Further ProfileEvents every query of the level reports, e.g. {"RealTimeMicroseconds": 5000}.
    counters: dict[str, float] = field(default_factory=dict)
    # Process-wide deltas beyond the queries' own, one per sampler slice (four per window), e.g. a system-log
    # flush: {"PartsLockHoldMicroseconds": (3000, 0, 3000, 0), "InsertedRows": (40, 0, 40, 0)}.
    process: dict[str, tuple[float, ...]] = field(default_factory=dict)
    # Background statements of the level (role "background"), each reporting these ProfileEvents (none if not
    # logged, as when the engine kept no row for them); their counters are not added to the process-wide ones.
    background: int = 0
    background_counters: dict[str, float] = field(default_factory=dict)
    background_logged: bool = True
    repetition: int = 0  # a second Level of the same schema and concurrency with another repetition is its rerun


def make_run(levels: list[Level], engine: str = "embedded", status: str = "complete", cpu_count: int = 64,
             slice_offsets: bool = True) -> Run:
    """The frames of a run of ``levels``. The process-wide hold deltas of slice k exceed the queries' by k µs
    unless ``slice_offsets`` is False."""
    queries, level_rows, query_events, events = [], [], [], []
    t = 0.0
    for seq, lv in enumerate(levels):
        start, end = t + 1.0, t + 1.0 + lv.window_s
        level_rows.append({"engine": engine, "schema": lv.schema, "concurrency": lv.concurrency,
                           "repetition": lv.repetition, "seq": seq, "measure_start_s": start, "measure_end_s": end,
                           "queries": lv.queries,
                           "errors": 0, "active_parts_before": lv.active_parts, "active_parts_after": lv.active_parts,
                           "interrupted": False})
        starts = np.linspace(start, end, lv.queries, endpoint=False)
        hold_event, wait_event, count_event = LOCK_EVENTS[lv.mode]
        for i, s in enumerate(starts):
            qid = f"{engine}-{seq}-{i}"
            queries.append({"engine": engine, "schema": lv.schema, "concurrency": lv.concurrency,
                            "repetition": lv.repetition, "worker": i % lv.concurrency, "role": "query",
                            "query_name": "q", "query_id": qid,
                            "phase": "measure", "intended_start_s": s, "start_s": s, "latency_ms": lv.latency_ms,
                            "error": None})
            per_query = ((hold_event, lv.hold_us), (wait_event, lv.wait_us), (count_event, 1), *lv.counters.items())
            for event, value in per_query:
                if value:
                    query_events.append({"query_id": qid, "event": event, "value": value, "engine": engine})
        for i, s in enumerate(np.linspace(start, end, lv.background, endpoint=False)):
            qid = f"{engine}-{seq}-bg{i}"
            queries.append({"engine": engine, "schema": lv.schema, "concurrency": lv.concurrency,
                            "repetition": lv.repetition, "worker": 0, "role": "background", "query_name": "bg",
                            "query_id": qid,
                            "phase": "measure", "intended_start_s": s, "start_s": s, "latency_ms": lv.latency_ms,
                            "error": None})
            for event, value in lv.background_counters.items() if lv.background_logged else ():
                query_events.append({"query_id": qid, "event": event, "value": value, "engine": engine})
        for k, tk in enumerate(np.linspace(start, end, 5)[1:]):
            extra = {event: deltas[k] for event, deltas in lv.process.items() if deltas[k]}
            events.append({"t_s": tk, "interval_s": lv.window_s / 4, "event": hold_event,
                           "delta": lv.hold_us * lv.queries / 4 + (k if slice_offsets else 0)
                           + extra.pop(hold_event, 0), "engine": engine, "schema": lv.schema,
                           "concurrency": lv.concurrency, "repetition": lv.repetition})
            for event, value in extra.items():
                events.append({"t_s": tk, "interval_s": lv.window_s / 4, "event": event, "delta": value,
                               "engine": engine, "schema": lv.schema, "concurrency": lv.concurrency,
                               "repetition": lv.repetition})
            for event, value in lv.counters.items():  # process-wide deltas: the same totals, in four slices
                events.append({"t_s": tk, "interval_s": lv.window_s / 4, "event": event,
                               "delta": value * lv.queries / 4, "engine": engine, "schema": lv.schema,
                               "concurrency": lv.concurrency, "repetition": lv.repetition})
        t = end
    names = [e for trio in LOCK_EVENTS.values() for e in trio] + ["GlobalThreadPoolLockWaitMicroseconds"]
    locks = catalog(pd.DataFrame({"name": names, "description": ""})).assign(engine=engine)
    manifest = {"run_id": "synthetic", "status": status, "format_version": 1, "lockprof_version": "test",
                "scenario": {"name": "synthetic"}, "host": {"cpu_count": cpu_count},
                "engines": [{"label": engine, "clickhouse_version": "0.0", "package": "none"}], "datasets": {}}
    frames = {table: _empty(table) for table in store.TABLES}  # tables this helper does not fill stay empty
    frames.update({"queries": pd.DataFrame(queries), "levels": pd.DataFrame(level_rows),
                   "events": pd.DataFrame(events) if events else _empty("events"),
                   "query_events": pd.DataFrame(query_events) if query_events else _empty("query_events"),
                   "locks": locks})
    for name, frame in frames.items():
        frames[name] = frame.assign(run_id="synthetic")
    return Run(paths=[], manifests=[manifest], **frames)
