"""A synthetic two-engine run with known answers, in memory or written as a run directory."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from lockprof.analysis.load import Run
from lockprof.store import RunDir, write_part


def synthetic_run(slowdown: float, run_id: str = "r1", engines=("old", "new"), host=None, seed=0, reps: int = 8,
                  window_noise: float = 0.02, order_effect: float = 1.0) -> Run:  # fmt: skip
    """Two engines, one schema, two levels; B's queries take `slowdown` times longer.

    Windows run in turned order (A B, B A, ...). Each window's latency is scaled by a drift shared by the
    pair and its own noise (sd `window_noise`), and the second window of a pair by `order_effect`.
    The old engine takes the parts lock exclusively (twice per query), the new one shared (once per
    query, and it has no exclusive counters: as 25.8 vs 26.9). Neither has a query log, so lock
    figures come from system.events deltas.
    """
    rng = np.random.default_rng(seed)
    queries, levels, events, locks = [], [], [], []
    modes = {0: "exclusive", 1: "shared"}
    for e, engine in enumerate(engines):
        mode = modes[e]
        prefix = "" if mode == "exclusive" else "Shared"
        for event, role in ((f"{prefix}PartsLockWaitMicroseconds", "wait"),
                            (f"{prefix}PartsLockHoldMicroseconds", "hold"), (f"{prefix}PartsLocks", "count")):
            unit = "count" if role == "count" else "us"
            locks.append({"event": event, "lock": "parts", "mode": mode, "role": role, "unit": unit,
                          "to_us": 1.0, "description": "", "engine": engine, "run_id": run_id})  # fmt: skip
    for conc in (1, 2):
        for rep in range(reps):
            drift = rng.lognormal(0, 0.1)
            order = list(range(len(engines)))
            order = order[rep % len(order):] + order[: rep % len(order)]
            for pos, e in enumerate(order):
                engine, mode = engines[e], modes[e]
                prefix = "" if mode == "exclusive" else "Shared"
                factor = (slowdown if e == 1 else 1.0) * drift * rng.lognormal(0, window_noise)
                factor *= order_effect if pos == 1 else 1.0
                start = 100.0 * (rep * 2 + pos) + conc * 10000
                t, n, first = start, 0, len(queries)
                while t < start + 2.0:
                    lat = 5.0 * factor * rng.lognormal(0, 0.2)
                    for w in range(conc):
                        queries.append({"engine": engine, "schema": "s", "concurrency": conc, "repetition": rep,
                                        "worker": w, "role": "query", "query_name": "q", "query_id": f"{engine}{n}",
                                        "phase": "measure", "intended_start_s": t, "start_s": t, "latency_ms": lat,
                                        "error": None, "run_id": run_id})  # fmt: skip
                        n += 1
                    t += lat / 1000.0
                levels.append({"engine": engine, "schema": "s", "concurrency": conc, "repetition": rep,
                               "seq": 2 * rep + pos, "position": pos, "measure_start_s": start,
                               "measure_end_s": start + 2.0, "queries": n, "errors": 0, "active_parts_before": 300,
                               "active_parts_after": 300, "interrupted": False, "run_id": run_id})  # fmt: skip
                ends = np.array([q["start_s"] + q["latency_ms"] / 1000 for q in queries[first:]])
                for k in range(10):
                    tk = start + 0.2 * (k + 1)
                    done = int(((ends > tk - 0.2) & (ends <= tk)).sum())
                    wait = 40.0 * conc * done if mode == "exclusive" else 0.0
                    for event, value in ((f"{prefix}PartsLockWaitMicroseconds", wait),
                                         (f"{prefix}PartsLockHoldMicroseconds", 20.0 * done),
                                         (f"{prefix}PartsLocks", (2.0 if mode == "exclusive" else 1.0) * done)):
                        if value:
                            events.append({"t_s": tk, "interval_s": 0.2, "event": event, "delta": value,
                                           "engine": engine, "schema": "s", "concurrency": conc,
                                           "repetition": rep, "run_id": run_id})  # fmt: skip
    manifest = {"run_id": run_id, "status": "complete", "scenario": {"sha256": "x"},
                "host": host or {"cpu_model": "cpu", "cpu_count": 2},
                "engines": [{"label": e, "clickhouse_version": "x"} for e in engines]}  # fmt: skip
    frames = {f.name: pd.DataFrame() for f in dataclasses.fields(Run) if f.name not in ("paths", "manifests", "cache")}
    frames.update(queries=pd.DataFrame(queries), levels=pd.DataFrame(levels), events=pd.DataFrame(events),
                  locks=pd.DataFrame(locks))  # fmt: skip
    return Run(paths=[], manifests=[manifest], **frames)


def write_run(run: Run, path: Path) -> Path:
    """Store a synthetic run as a real run directory, so the CLI can read it."""
    run_dir = RunDir(path, {k: v for k, v in run.manifest.items() if k != "status"})
    for table in ("queries", "levels", "events", "locks"):
        write_part(run_dir.path, table, "synthetic", getattr(run, table))
    run_dir.finish("complete")
    return run_dir.path
