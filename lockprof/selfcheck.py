"""Engine self-check: do queries on separate connections really run in parallel?

Older chDB releases serialize queries inside the library. Lock contention cannot
show where queries never overlap, so before measuring, each engine runs a short
CPU-bound query (one thread each) at concurrency 1 and 2; without a speed-up the
engine's concurrency results are flagged as meaningless for contention.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from lockprof.clock import RunClock
from lockprof.driver import Level, run_level
from lockprof.engines.base import Connection
from lockprof.scenario import Query, Scenario, Schema

PROBE_SQL = "SELECT sum(cityHash64(number)) FROM numbers(2000000) SETTINGS max_threads = 1"
PARALLEL_SPEEDUP = 1.3  # two independent single-threaded queries on 2+ idle cores give close to 2


def _probe_scenario() -> Scenario:
    return Scenario(
        "self_check",
        [Schema("none", "CREATE TABLE {table} (x UInt8) ENGINE = Memory")],
        [Query("cpu_probe", PROBE_SQL)],
    )


def self_check(connections: list[Connection], clock: RunClock, seconds: float = 1.0) -> dict[str, Any]:
    """Throughput of the probe at concurrency 1 and 2, and whether the engine runs queries in parallel."""
    scenario = _probe_scenario()
    qps = {}
    for n in (1, 2):
        level = Level("none", "system.one", n, 0, 0.1, seconds, "lockprof-self-check-", seed=0)
        result = run_level(scenario, level, connections[:n], [], clock, threading.Event())
        measured = result.records[result.records["phase"] == "measure"]
        qps[n] = len(measured) / max(result.measure_end_s - result.measure_start_s, 1e-9)
    speedup = qps[2] / qps[1] if qps[1] else float("nan")
    cores = os.cpu_count() or 1
    verdict = "parallel" if speedup >= PARALLEL_SPEEDUP else "serialized"
    if cores < 2:
        verdict = "unknown (one CPU core)"
    return {"qps_1": round(qps[1], 2), "qps_2": round(qps[2], 2), "speedup": round(speedup, 3), "verdict": verdict}
