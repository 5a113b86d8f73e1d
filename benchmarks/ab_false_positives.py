"""A/A false-positive rate: the same engine on both sides must be called faster or slower at most 5% of the time.

One interleaved A/A run of namespace_partitioning (namespace_day, concurrency 1 and 2,
the default A/B windows) is cut into ``--blocks`` comparisons of the default
repetitions each; every latency and throughput point of every comparison counts.
Before it, the first engine's datasets are built in a run of their own, so one worker
reuses a cached dataset while the other builds its copy: the situation of the A/A bias.
Runs kept earlier with ``--keep`` join the count with ``--pool`` (``--blocks 0`` judges
them alone).

    python -m benchmarks.ab_false_positives [--quick] [--blocks N] [--keep DIR] [--pool DIR ...]
"""

from __future__ import annotations

import argparse
import sys
import time

import pandas as pd

from benchmarks.ab_common import (
    CHANGED,
    CPU,
    PERF,
    add_run_arguments,
    measure,
    plan,
    pooled,
    position_effect,
    rate_line,
    verdicts,
)
from benchmarks.common import host_line, private_cache

TARGET = 0.05


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the harness, measures nothing")
    parser.add_argument("--blocks", type=int, default=20, help="A/A comparisons (default 20)")
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    from lockprof.analysis.ab import compare

    p = plan(args.quick, args.blocks, args.main)
    engines = ["embedded", "embedded"]
    runs = pooled(p, engines, args.pool)
    cache = private_cache("aa")
    print(host_line(), flush=True)
    print(f"# {p.scenario.name} {', '.join(p.schemas)}, concurrency {p.concurrency}, {p.warmup_s} s warm-up + "
          f"{p.duration_s} s per window; {p.blocks} A/A comparisons of {p.repetitions} repetitions measured now, "
          f"{len(runs)} kept runs pooled", flush=True)
    started = time.perf_counter()
    if p.blocks:
        runs.append(measure(p, engines, args.keep or cache / "runs"))
    elapsed = time.perf_counter() - started
    points = verdicts(runs, p)
    for metric, rows in points.groupby("metric"):
        print(f"# {metric}: " + ", ".join(f"{v} {n}" for v, n in rows["verdict"].value_counts().items()))
    perf = points[points["metric"].isin(PERF)]
    print(rate_line("ab_false_positives latency+throughput points called faster/slower",
                    int(perf["verdict"].isin(CHANGED).sum()), len(perf), TARGET, at_most=True), flush=True)
    cpu = points[points["metric"] == CPU]
    print(rate_line("ab_false_positives CPU-time points called faster/slower", int(cpu["verdict"].isin(CHANGED).sum()),
                    len(cpu), TARGET, at_most=True), flush=True)  # fmt: skip
    for k, run in enumerate(runs, 1):
        of = f"of run {k}/{len(runs)}"
        whole = compare(run).frame
        for r in whole[whole["metric"].isin([*PERF, CPU])].itertuples():
            print(f"RESULT ab_false_positives whole run {r.schema} c={r.concurrency} {r.metric}: {r.ratio:.3f}x "
                  f"(95% CI {r.ci_low:.3f}-{r.ci_high:.3f}, all {r.repetitions_a} repetitions {of})", flush=True)
        for r in position_effect(run).itertuples():
            measured = (f"{r.ratio:.3f}x (95% CI {r.ci_low:.3f}-{r.ci_high:.3f}, {r.repetitions} repetitions {of}; "
                        "the restarts in reverse order cancel it)" if pd.notna(r.ratio) else
                        f"not estimated ({r.repetitions} repetitions {of} with both sides measured are too few)")
            print(f"RESULT ab_false_positives worker position c={r.concurrency}: latency of the worker started "
                  f"second / first {measured}", flush=True)
    if p.blocks:
        print(f"RESULT ab_false_positives time: {elapsed:.0f} s for the {p.blocks} comparisons measured now, "
              f"{elapsed / p.blocks:.0f} s per comparison", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
