"""Engine self-check: do queries on separate connections really run at the same time?

Older chDB releases serialize queries inside the library. Lock contention cannot
show where queries never overlap, so before measuring, each engine runs a query
that only waits (``sleep``) alone and then two at once on separate connections.
An engine that runs them in parallel finishes the pair in about the time of one
(speed-up near 2); one that serializes them needs twice as long (near 1).

A waiting query needs no CPU, so this answers the question on a busy machine and
on every engine kind alike. An earlier probe compared the throughput of a
CPU-bound query at concurrency 1 and 2: on a server, the client's own per-query
work under the GIL and the server's CPU share the same cores, so a genuinely
parallel 26.9 server measured a speed-up of 1.0 and was called serialized. That
CPU throughput ratio and the machine's own (a GIL-free hashing control) are still
reported, as context: they say how much CPU headroom the machine had, not whether
the engine serializes.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from typing import Any

from lockprof.clock import RunClock
from lockprof.driver import Level, run_level
from lockprof.engines.base import Connection
from lockprof.scenario import Query, Scenario, Schema

WAIT_S = 0.25  # each probe query sleeps this long inside the engine
WAIT_SQL = f"SELECT sleep({WAIT_S}) FORMAT Null"
CPU_SQL = "SELECT count() FROM numbers(6000000) WHERE cityHash64(number) % 7 = 1 SETTINGS max_threads = 1"
PARALLEL_SPEEDUP = 1.5  # two waits overlapping: ~2; serialized: ~1; halfway between decides
SERIAL_SPEEDUP = 1.2  # below this the pair did not overlap at all (beyond noise)
CONTROL_SCALES = 1.3  # the hashing control's speed-up on 2+ cores with headroom


def _cpu_scenario() -> Scenario:
    return Scenario("self_check", [Schema("none", "CREATE TABLE {table} (x UInt8) ENGINE = Memory")],
                    [Query("cpu_probe", CPU_SQL)])


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


def wait_times(connections: list[Connection], n: int) -> float:
    """Wall time for ``n`` connections to each run the waiting query, all released at once."""
    start = threading.Barrier(n + 1)
    errors: list[BaseException] = []

    def one(conn: Connection) -> None:
        start.wait()
        try:
            conn.execute(WAIT_SQL)
        except BaseException as exc:  # reported by the caller, never swallowed
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(c,)) for c in connections[:n]]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return elapsed


def overlap_speedup(connections: list[Connection], rounds: int = 5) -> tuple[float, float, float]:
    """(speed-up, one, pair): throughput of the waiting query at 2 over 1, from the fastest of a few rounds.

    The fastest, not the median: an engine that serializes can never finish two
    waits in less than twice one, however idle the machine, while load elsewhere
    only ever slows a round down. One unmeasured round first opens the connections.
    """
    wait_times(connections, 2)
    ones, pairs = [], []
    for _ in range(rounds):
        ones.append(wait_times(connections, 1))
        pairs.append(wait_times(connections, 2))
    one, pair = min(ones), min(pairs)
    return 2 * one / pair, one, pair


def cpu_speedup(connections: list[Connection], clock: RunClock, seconds: float) -> tuple[float, float]:
    """(queries/s at 1, throughput ratio 2 over 1) of a CPU-bound query: CPU headroom, not parallelism."""
    scenario = _cpu_scenario()

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

    one, two = qps(1), qps(2)
    return one, (two / one if one else float("nan"))


def self_check(connections: list[Connection], clock: RunClock, seconds: float = 0.5, rounds: int = 3) -> dict[str, Any]:
    """Whether two queries overlap in the engine, with the CPU figures beside it for context."""
    speedup, one, pair = overlap_speedup(connections, rounds)
    qps_1, cpu = cpu_speedup(connections, clock, seconds)
    control = control_speedup(seconds / 2)
    if speedup >= PARALLEL_SPEEDUP:
        verdict = "parallel"
    elif speedup < SERIAL_SPEEDUP:
        verdict = "serialized"
    else:
        verdict = f"inconclusive (two waiting queries overlapped only partly: speed-up {speedup:.2f}x)"
    return {"speedup": round(speedup, 3), "wait_one_s": round(one, 4), "wait_pair_s": round(pair, 4),
            "qps_1": round(qps_1, 2), "cpu_speedup": round(cpu, 3), "control_speedup": round(control, 3),
            "probe": WAIT_SQL, "verdict": verdict}
