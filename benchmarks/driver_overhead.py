"""Driver overhead: lockprof's closed-loop driver on ``SELECT 1`` vs a bare loop of chDB calls.

``SELECT 1`` is the cheapest query there is, so whatever the driver adds per query
(timing, parameters, ids, the record, the connection's ``log_comment`` tag that matches
the query log) shows here at its largest. Both sides use the same engine in this process, the same
number of threads with their own connections, and the same rule for what counts: queries
started inside the measurement window, divided by its length. Pairs alternate order.
Both sides run with ``log_queries=0``: at thousands of queries a second the engine's own flushes
and merges of its query log come and go between windows, and made two bare loops differ by
7–13% (standard deviation of their ratio) where they now differ by 3–4%; that work is the
engine's, the same for both sides, and not the driver's.

    python -m benchmarks.driver_overhead [--quick] [--repetitions N]
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from benchmarks.common import arguments, host_line, interleaved, private_cache, ratio_line

TARGET = 0.95  # lockprof should reach at least 95% of the bare loop's throughput
QUIET = {"log_queries": "0"}  # for both sides: see the module's docstring


def bare_loop(conns: Sequence[Any], concurrency: int, warmup_s: float, duration_s: float) -> float:
    """Queries per second of plain ``conn.query("SELECT 1", "Null")`` calls in threads."""
    barrier = threading.Barrier(concurrency + 1)
    counts = [0] * concurrency
    window: dict[str, float] = {}

    def loop(i: int) -> None:
        conn, n = conns[i], 0
        barrier.wait()
        measure, end = window["measure"], window["end"]
        while True:
            start = time.perf_counter()
            if start >= end:
                break
            conn.query("SELECT 1", "Null")
            if start >= measure:
                n += 1
        counts[i] = n

    threads = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(concurrency)]
    for t in threads:
        t.start()
    now = time.perf_counter()
    window["measure"] = now + warmup_s
    window["end"] = window["measure"] + duration_s
    barrier.wait()
    for t in threads:
        t.join()
    return sum(counts) / duration_s


def lockprof_loop(conns: Sequence[Any], concurrency: int, warmup_s: float, duration_s: float, rep: int) -> float:
    """Queries per second of ``run_level`` on the same statement, counted as the worker counts them."""
    from lockprof.clock import RunClock
    from lockprof.driver import Level, run_level
    from lockprof.scenario import Query, Scenario, Schema

    unused = Schema("none", "CREATE TABLE {table} (x UInt8) ENGINE = Memory")  # SELECT 1 reads no table
    scenario = Scenario(name="select1", schemas=[unused], queries=[Query("select1", "SELECT 1")],
                        concurrency=[concurrency], warmup_s=warmup_s, duration_s=duration_s, seed=1)
    level = Level(schema="none", table="none", concurrency=concurrency, repetition=rep, warmup_s=warmup_s,
                  duration_s=duration_s, id_prefix=f"bench-{concurrency}-{rep}-", seed=1)
    result = run_level(scenario, level, conns, [], RunClock(), threading.Event())
    measured = int((result.records["phase"] == "measure").sum())
    return measured / (result.measure_end_s - result.measure_start_s)


def main(argv: list[str] | None = None) -> int:
    # Many short pairs rather than a few long ones: on a shared machine the load changes within
    # seconds, and two windows half a second apart see nearly the same machine.
    args = arguments(__doc__.splitlines()[0], repetitions=30).parse_args(argv)
    levels = [1, 2] if args.quick else [1, 2, 4, 8]
    warmup_s, duration_s = (0.05, 0.2) if args.quick else (0.1, 0.5)
    reps = 2 if args.quick else args.repetitions
    private_cache("driver")

    import chdb

    from lockprof.engines.embedded import EmbeddedEngine

    print(host_line(), flush=True)
    engine = EmbeddedEngine(settings=QUIET)
    # The bare loop opens the engine's own data path with the same config and settings, as a user of chDB would.
    bare_conns = [chdb.connect(engine.dsn) for _ in range(max(levels))]
    lockprof_conns = [engine.connect() for _ in range(max(levels))]
    print(f"# {reps} interleaved pairs per level, {duration_s} s each after {warmup_s} s warm-up; "
          f"ratio = lockprof qps / bare qps", flush=True)
    for c in levels:
        pairs = interleaved(
            reps,
            lambda c=c: bare_loop(bare_conns, c, warmup_s, duration_s),
            lambda c=c: lockprof_loop(lockprof_conns, c, warmup_s, duration_s, 0),
        )
        bare = [a for a, _ in pairs]
        ours = [b for _, b in pairs]
        print(f"# c={c}: bare qps {', '.join(f'{q:.0f}' for q in bare)}; "
              f"lockprof qps {', '.join(f'{q:.0f}' for q in ours)}")
        print(ratio_line(f"driver_overhead c={c} lockprof/bare throughput", [b / a for a, b in pairs], TARGET),
              flush=True)
    for conn in bare_conns:
        conn.close()
    engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
