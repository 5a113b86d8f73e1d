"""A/A false-positive rate: the same engine on both sides must be called faster or slower at most 5% of the time.

One interleaved A/A run (by default the cheap plan, see ``ab_common.plan``; ``--main``
for namespace_partitioning's namespace_day at concurrency 1 and 2 with the default A/B
windows) is cut into ``--blocks`` comparisons of the default repetitions each. The rate
that the method promises is per comparison: the share of A/A comparisons that call any
latency or throughput point faster or slower. Latency and throughput of one window are
one observation, so the rate per (schema, concurrency) pair follows, and the rate per
point comes last, as a secondary figure. CPU time is its own family, counted apart.
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
    first_repetition,
    measure,
    per_trial,
    plan,
    pooled,
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
    cpu = points[points["metric"] == CPU]
    rates = (("comparisons calling any latency or throughput point", perf, ["block"]),
             ("latency-throughput pairs (a schema and concurrency) with a call", perf,
              ["block", "schema", "concurrency"]),
             ("comparisons calling CPU time (its own family)", cpu, ["block"]))  # fmt: skip
    for what, rows, by in rates:
        print(rate_line(f"ab_false_positives {what}", *per_trial(rows, CHANGED, by), TARGET, at_most=True), flush=True)
    print(rate_line("ab_false_positives latency+throughput points called faster/slower (secondary: points of one "
                    "comparison are not independent)", int(perf["verdict"].isin(CHANGED).sum()), len(perf), TARGET,
                    at_most=True), flush=True)  # fmt: skip
    without = verdicts(runs, p, position_term=False)
    without = without[without["metric"].isin(PERF)]
    print(rate_line("ab_false_positives comparisons calling any latency or throughput point, judged without the "
                    "position term", *per_trial(without, CHANGED, ["block"]), TARGET, at_most=True), flush=True)
    words = perf["verdict"].value_counts()
    print("RESULT ab_false_positives latency+throughput verdicts: "
          + ", ".join(f"{v} {n} ({n / len(perf):.0%})" for v, n in words.items()), flush=True)
    for k, run in enumerate(runs, 1):
        of = f"of run {k}/{len(runs)}"
        whole = compare(run).frame
        for r in whole[whole["metric"].isin([*PERF, CPU])].itertuples():
            print(f"RESULT ab_false_positives whole run {r.schema} c={r.concurrency} {r.metric}: {r.ratio:.3f}x "
                  f"(95% CI {r.ci_low:.3f}-{r.ci_high:.3f}, all {r.repetitions_a} repetitions {of})", flush=True)
        for r in whole[(whole["metric"] == "latency_ms")].itertuples():
            measured = (f"{1 + r.position_effect:.3f}x (95% CI {r.position_ci_low:.3f}-{r.position_ci_high:.3f}, "
                        f"all {r.repetitions_a} repetitions {of}; estimated with the engine effect, removed from it)"
                        if pd.notna(r.position_effect) else "not estimated (too few repetitions of each order)")
            print(f"RESULT ab_false_positives worker position {r.schema} c={r.concurrency}: latency of the worker "
                  f"started second (it runs the second window) / first {measured}", flush=True)
        for r in first_repetition(run).itertuples():
            print(f"RESULT ab_false_positives repetition 0 {r.schema} c={r.concurrency}: latency B/A {r.first:.3f}x, "
                  f"percentile {r.percentile:.0f} of the run's {r.repetitions} repetitions (their median "
                  f"{r.rest_median:.3f}x), position effect removed, {of}", flush=True)
    if p.blocks:
        print(f"RESULT ab_false_positives time: {elapsed:.0f} s for the {p.blocks} comparisons measured now, "
              f"{elapsed / p.blocks:.0f} s per comparison", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
