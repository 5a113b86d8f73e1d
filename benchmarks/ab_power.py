"""Power: how often an A/B at the default repetitions calls a known ~10% slowdown "slower".

The slowdown is made by the engine, never by editing numbers: side B is the same
embedded engine with a smaller ``max_untracked_memory`` (more allocations go through the
memory tracker): 256 bytes on the cheap plan (the tiny scenario: a 16% slowdown as
measured, 512 bytes gave 5.4%), 128 on the main one (``--main``: about 10-12%). One interleaved run is cut into
``--blocks`` comparisons of the default repetitions; the whole run, compared at once,
gives the size of the injected change with its interval. Power is counted per
comparison (its latency and throughput points all called slower) and per point. Runs kept earlier with
``--keep`` join the count with ``--pool`` (``--blocks 0`` judges them alone).

    python -m benchmarks.ab_power [--quick] [--blocks N] [--setting NAME=VALUE] [--keep DIR] [--pool DIR ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

from benchmarks.ab_common import CPU, PERF, add_run_arguments, measure, per_trial, plan, pooled, rate_line, verdicts
from benchmarks.common import host_line, private_cache

TARGET = 0.80
SETTINGS = {"cheap": "max_untracked_memory=256", "main": "max_untracked_memory=128"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the harness, measures nothing")
    parser.add_argument("--blocks", type=int, default=10, help="A/B comparisons (default 10)")
    parser.add_argument("--setting", help=f"the slowing setting of side B (default {SETTINGS['cheap']}, "
                                          f"{SETTINGS['main']} with --main)")
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    from lockprof.analysis.ab import compare

    p = plan(args.quick, args.blocks, args.main)
    args.setting = args.setting or SETTINGS["main" if args.main else "cheap"]
    engines = ["embedded", f"embedded?{args.setting}"]
    runs = pooled(p, engines, args.pool)
    cache = private_cache("power")
    print(host_line(), flush=True)
    print(f"# {p.scenario.name} {', '.join(p.schemas)}, concurrency {p.concurrency}, {p.warmup_s} s warm-up + "
          f"{p.duration_s} s per window; {p.blocks} comparisons of {p.repetitions} repetitions measured now, "
          f"{len(runs)} kept runs pooled; B = embedded?{args.setting}", flush=True)
    started = time.perf_counter()
    if p.blocks:
        runs.append(measure(p, engines, args.keep or cache / "runs"))
    elapsed = time.perf_counter() - started
    for k, run in enumerate(runs, 1):
        whole = compare(run).frame
        for r in whole[whole["metric"].isin([*PERF, CPU])].itertuples():
            print(f"RESULT ab_power injected change {r.schema} c={r.concurrency} {r.metric}: {r.ratio:.3f}x "
                  f"(95% CI {r.ci_low:.3f}-{r.ci_high:.3f}, all {r.repetitions_a} repetitions of run {k}/{len(runs)})",
                  flush=True)  # fmt: skip
    points = verdicts(runs, p)
    for metric, rows in points.groupby("metric"):
        print(f"# {metric}: " + ", ".join(f"{v} {n}" for v, n in rows["verdict"].value_counts().items()))
        print(rate_line(f"ab_power {metric} points called slower", int(rows["verdict"].eq("slower").sum()),
                        len(rows), TARGET, at_most=False), flush=True)  # fmt: skip
    perf = points[points["metric"].isin(PERF)]
    missed = perf.assign(verdict=perf["verdict"].where(perf["verdict"] != "slower", "found"))
    misses, comparisons = per_trial(missed, tuple(set(missed["verdict"]) - {"found"}), ["block"])
    print(rate_line("ab_power comparisons calling every latency and throughput point slower", comparisons - misses,
                    comparisons, TARGET, at_most=False), flush=True)  # fmt: skip
    print(rate_line("ab_power latency+throughput points called slower (secondary: points of one comparison are not "
                    "independent)", int(perf["verdict"].eq("slower").sum()), len(perf), TARGET, at_most=False),
          flush=True)  # fmt: skip
    without = verdicts(runs, p, position_term=False)
    without = without[without["metric"].isin(PERF)]
    print(rate_line("ab_power latency+throughput points called slower, judged without the position term",
                    int(without["verdict"].eq("slower").sum()), len(without), TARGET, at_most=False), flush=True)
    half = dataclasses.replace(p, repetitions=max(1, p.repetitions // 2))
    words = verdicts(runs, half)
    words = words[words["metric"].isin(PERF)]["verdict"].value_counts()
    print(f"RESULT ab_power verdicts of the latency and throughput points at {half.repetitions} repetitions per "
          "comparison (too few to decide a 10% change every time): "
          + ", ".join(f"{v} {n}" for v, n in words.items()), flush=True)
    print(f"RESULT ab_power time: {elapsed:.0f} s for the {p.blocks} comparisons measured now; "
          f"{points['block'].nunique()} comparisons judged", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
