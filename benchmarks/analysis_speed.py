"""Analysis speed: ``load_run``, the analysis and the HTML report on a synthetic run of a million query records.

The baseline is the least any loader must do: ``pd.read_parquet`` of each table's folder
of the same run. Baseline and lockprof alternate; the ratios say what lockprof's loader
adds on top of reading the files, and records/s says whether a million records take
seconds (targets at one million records: load_run plus lock_budget under 10 s; the whole
report, every table, figure and verdict of it, under 30 s after loading).

    python -m benchmarks.analysis_speed [--quick] [--queries N] [--repetitions N]
"""

from __future__ import annotations

import gc
import resource
import sys
import time
from pathlib import Path

import pandas as pd

from benchmarks.common import arguments, host_line, interleaved, private_cache, ratio_line, spread

TARGET_S = 10.0
REPORT_TARGET_S = 30.0


def read_plain(path: Path) -> int:
    """Every table of the run read with pandas alone; returns the rows read."""
    from lockprof.store import TABLES

    rows = 0
    for table in TABLES:
        if (path / table).is_dir():
            rows += len(pd.read_parquet(path / table))
    return rows


def analyse(path: Path, report: bool = False) -> tuple[float, float, float]:
    """(seconds in load_run, seconds in lock_budget, seconds rendering the report after that; 0 if not asked)."""
    from lockprof.analysis import load_run
    from lockprof.analysis.budget import lock_budget
    from lockprof.report import render_report

    started = time.perf_counter()
    run = load_run(path)
    loaded = time.perf_counter()
    budget = lock_budget(run)
    done = time.perf_counter()
    assert not budget.empty and (budget["source"] == "query_log").all()
    rendered = 0.0
    if report:
        html = render_report(run)
        rendered = time.perf_counter() - done
        assert "<h2>Verdict" in html
    del run, budget
    gc.collect()
    return loaded - started, done - loaded, rendered


def timed(fn, *args) -> float:
    started = time.perf_counter()
    fn(*args)
    elapsed = time.perf_counter() - started
    gc.collect()
    return elapsed


def available_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def largest_that_fits(cache: Path, queries: int) -> tuple[int, str]:
    """Calibrate memory per record on a small run and cap the size at half the available memory.

    The machine is shared: a loader whose memory grows faster than expected must not take
    it down, so the size is chosen from what this lockprof really uses, not from a guess.
    """
    from benchmarks.synthetic_run import write_synthetic_run

    small = min(queries, 20_000)
    written = write_synthetic_run(cache / "calibration", small)
    before = peak_rss_bytes()
    analyse(cache / "calibration")
    per_record = max(peak_rss_bytes() - before, 1) / written
    budget = available_bytes() / 2
    fits = int(budget / per_record)
    note = (f"calibration: {per_record / 1024:.1f} KiB peak memory per record on {written} records; "
            f"{queries} records need about {queries * per_record / 2**30:.1f} GiB, half the available memory is "
            f"{budget / 2**30:.1f} GiB")
    return (queries, note) if fits >= queries else (max(small, fits // 10_000 * 10_000), note)


def main(argv: list[str] | None = None) -> int:
    parser = arguments(__doc__.splitlines()[0], repetitions=3)
    parser.add_argument("--queries", type=int, default=1_000_000, help="query records in the synthetic run")
    args = parser.parse_args(argv)
    queries = 5_000 if args.quick else args.queries
    reps = 2 if args.quick else args.repetitions
    cache = private_cache("analysis")
    from benchmarks.synthetic_run import PROFILE_EVENTS, write_synthetic_run

    print(host_line(), flush=True)
    size_to_run, note = largest_that_fits(cache, queries)
    print(f"# {note}", flush=True)
    if size_to_run < queries:
        print(f"RESULT analysis_speed: {queries} records NOT RUN: would not fit in memory; measuring "
              f"{size_to_run} records instead", flush=True)
    queries = size_to_run
    path = cache / "synthetic-run"
    started = time.perf_counter()
    written = write_synthetic_run(path, queries)
    size = sum(f.stat().st_size for f in path.rglob("*.parquet"))
    print(f"# synthetic run: {written} query records, {written * len(PROFILE_EVENTS)} query_events rows, "
          f"{size / 1e6:.0f} MB of Parquet, written in {time.perf_counter() - started:.1f} s", flush=True)

    pairs = interleaved(reps, lambda: timed(read_plain, path), lambda: analyse(path, report=True))
    plain = [a for a, _ in pairs]
    load = [b[0] for _, b in pairs]
    total = [b[0] + b[1] for _, b in pairs]
    print(f"# seconds: plain read_parquet {', '.join(f'{x:.2f}' for x in plain)}; load_run "
          f"{', '.join(f'{x:.2f}' for x in load)}; lock_budget {', '.join(f'{b[1]:.2f}' for _, b in pairs)}")
    print(ratio_line("analysis_speed load_run/plain read_parquet time", [b / a for a, b in zip(plain, load)]))
    print(ratio_line("analysis_speed load_run+lock_budget/plain read_parquet time",
                     [b / a for a, b in zip(plain, total)]))
    s = spread(total)
    judged = ("met" if s.high < TARGET_S else "not met") if written >= 1_000_000 else "not judged (under 1M records)"
    print(f"RESULT analysis_speed: load_run+lock_budget median {s.median:.2f} s (min-max {s.low:.2f}-{s.high:.2f}) "
          f"for {written} records = {written / s.median:,.0f} records/s; load_run alone "
          f"{written / spread(load).median:,.0f} records/s; target < {TARGET_S:g} s at 1M: {judged}")
    r = spread([b[2] for _, b in pairs])
    judged = ("met" if r.high < REPORT_TARGET_S else "not met") if written >= 1_000_000 \
        else "not judged (under 1M records)"
    print(f"RESULT analysis_speed report: render_report after loading median {r.median:.2f} s (min-max "
          f"{r.low:.2f}-{r.high:.2f}) for {written} records; target < {REPORT_TARGET_S:g} s at 1M: {judged}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"RESULT analysis_speed memory: peak RSS {peak:.2f} GiB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
