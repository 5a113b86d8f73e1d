"""Engine self-check: do queries on separate connections really run in parallel?

Older chDB releases serialize queries inside the library. Lock contention cannot
show where queries never overlap, so before measuring, each engine runs a short
CPU-bound query (one thread each) at concurrency 1 and 2; without a speed-up the
engine's concurrency results are flagged as meaningless for contention.

A busy machine gives no speed-up either, so the same measurement is made on a
control that certainly runs in parallel (hashing, which releases the GIL); the
engine is called serialized only when the control did scale.
"""

from __future__ import annotations

import hashlib
import os
import statistics
import threading
import time
from typing import Any

from lockprof.clock import RunClock
from lockprof.driver import Level, run_level
from lockprof.engines.base import Connection
from lockprof.scenario import Query, Scenario, Schema

PROBE_SQL = "SELECT count() FROM numbers(6000000) WHERE cityHash64(number) % 7 = 1 SETTINGS max_threads = 1"
PARALLEL_SPEEDUP = 1.3  # two ~10 ms single-threaded queries on 2+ idle cores give close to 2


def _probe_scenario() -> Scenario:
    return Scenario(
        "self_check",
        [Schema("none", "CREATE TABLE {table} (x UInt8) ENGINE = Memory")],
        [Query("cpu_probe", PROBE_SQL)],
    )


def control_speedup(seconds: float) -> float:
    """Speed-up of two threads over one at hashing, which releases the GIL: what this machine allows now."""
    block = os.urandom(4 << 20)

    def rate(n: int) -> float:
        done = [0] * n
        deadline = time.perf_counter() + seconds

        def spin(i: int) -> None:
            while time.perf_counter() < deadline:
                hashlib.sha256(block).digest()
                done[i] += 1

        threads = [threading.Thread(target=spin, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return sum(done) / seconds

    one = rate(1)
    return rate(2) / one if one else float("nan")


def self_check(connections: list[Connection], clock: RunClock, seconds: float = 0.5, rounds: int = 3) -> dict[str, Any]:
    """Speed-up of the probe from concurrency 1 to 2 beside the machine's own (control), median of a few rounds
    so that a passing burst of load elsewhere does not decide the verdict."""
    scenario = _probe_scenario()

    def qps(n: int) -> float:
        level = Level("none", "system.one", n, 0, 0.05, seconds, "lockprof-self-check-", seed=0)
        result = run_level(scenario, level, connections[:n], [], clock, threading.Event())
        # Completions in the window, not starts: in an engine that serializes queries, a query waiting for its
        # turn has started, so counting starts credits concurrency 2 with an extra query per window, which on
        # a loaded machine (a few slow probes per window) looked like a speed-up of 1.3-1.5.
        rec = result.records
        ends = rec["start_s"] + rec["latency_ms"] / 1000.0
        done = int(((ends >= result.measure_start_s) & (ends <= result.measure_end_s)).sum())
        return done / max(result.measure_end_s - result.measure_start_s, 1e-9)

    ones, speedups, controls = [], [], []
    for _ in range(rounds):
        one, two = qps(1), qps(2)
        ones.append(one)
        speedups.append(two / one if one else float("nan"))
        controls.append(control_speedup(seconds / 2))
    speedup, control = statistics.median(speedups), statistics.median(controls)
    if (os.cpu_count() or 1) < 2:
        verdict = "unknown (one CPU core)"
    elif speedup >= PARALLEL_SPEEDUP:
        verdict = "parallel"
    elif control < PARALLEL_SPEEDUP:
        verdict = f"inconclusive (the machine is busy: a parallel control scaled only {control:.2f}x)"
    else:
        verdict = "serialized"
    return {"qps_1": round(statistics.median(ones), 2), "speedup": round(speedup, 3),
            "control_speedup": round(control, 3), "verdict": verdict}
