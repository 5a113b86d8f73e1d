"""Sampler overhead: the real orchestrator with every sampler vs none, on namespace_partitioning.

Each repetition is two complete ``lockprof.run.run`` calls, one with all samplers
(events, metrics, query_log, py-spy on the worker) and one with ``samplers=()``, in
alternating order, each in its own worker process on the same cached dataset. The ratio
per concurrency is samplers-on throughput over samplers-off throughput of the same pair;
"samplers cost under 3%" means that ratio is at least 0.97.

    python -m benchmarks.sampler_overhead [--quick] [--repetitions N]
"""

from __future__ import annotations

import io
import itertools
import sys
from pathlib import Path

import pandas as pd

from benchmarks.common import SCENARIOS, TINY_SCENARIO, arguments, host_line, interleaved, private_cache, ratio_line

TARGET = 0.97


def measure(scenario: Path, schema: str, concurrency: list[int], warmup_s: float, duration_s: float,
            samplers: tuple[str, ...], out: Path) -> pd.Series:
    """Throughput per concurrency of one full run, read back through the analysis like any run."""
    from lockprof.analysis import load_run
    from lockprof.analysis.budget import level_summary
    from lockprof.progress import PlainReporter
    from lockprof.run import RunOptions, run

    path = run(RunOptions(scenario_path=scenario, concurrency=concurrency, warmup_s=warmup_s, duration_s=duration_s,
                          schemas=[schema], samplers=samplers, out=out), reporter=PlainReporter(io.StringIO()))
    return level_summary(load_run(path)).set_index("concurrency")["throughput_qps"]


def main(argv: list[str] | None = None) -> int:
    args = arguments(__doc__.splitlines()[0], repetitions=4).parse_args(argv)
    if args.quick:
        scenario, concurrency, warmup_s, duration_s, reps = TINY_SCENARIO, [1], 0.1, 0.3, 1
    else:
        scenario, concurrency, warmup_s, duration_s, reps = (SCENARIOS / "namespace_partitioning.py", [1, 2, 4],
                                                             0.5, 3.0, args.repetitions)
    cache = private_cache("samplers")
    from lockprof.worker import ALL_SAMPLERS

    print(host_line(), flush=True)
    print(f"# {scenario.name} namespace_day, concurrency {concurrency}, {warmup_s} s warm-up + {duration_s} s per "
          f"level; {reps} interleaved pairs of full runs; ratio = all samplers / none", flush=True)
    counter = itertools.count()

    def one(samplers: tuple[str, ...]) -> pd.Series:
        return measure(scenario, "namespace_day", concurrency, warmup_s, duration_s, samplers,
                       cache / "runs" / f"run-{next(counter)}")

    # The first run builds the dataset; build it before timing so both sides find it cached.
    one(())
    pairs = interleaved(reps, lambda: one(()), lambda: one(ALL_SAMPLERS))
    for c in concurrency:
        off = [a[c] for a, _ in pairs]
        on = [b[c] for _, b in pairs]
        print(f"# c={c}: qps without samplers {', '.join(f'{q:.1f}' for q in off)}; "
              f"with all samplers {', '.join(f'{q:.1f}' for q in on)}")
        print(ratio_line(f"sampler_overhead c={c} all-samplers/no-samplers throughput",
                         [b / a for a, b in zip(off, on)], TARGET), flush=True)
    pooled = [b[c] / a[c] for a, b in pairs for c in concurrency]
    print(ratio_line("sampler_overhead all levels pooled", pooled, TARGET), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
