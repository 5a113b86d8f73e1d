"""Analysis speed: the summary and the HTML report of a synthetic run of a million query records, in time and memory.

Targets (issue 14), on a run of 1 000 000 query records with their ProfileEvents (66 per query, as a
real chDB query has): ``load_run`` plus everything ``lockprof summary`` computes and prints under
5 s and under 4 GiB peak RSS; ``load_run`` plus the whole HTML report (every table, figure and
verdict) under 30 s.

Every measurement runs in a fresh worker process (this module with ``--worker``), so each peak RSS
is that of one analysis alone, not of the benchmark writing the run or of an earlier repetition; the
worker prints one JSON line with its seconds per phase and its peak RSS. The parent watches each
worker's memory and stops it if it would take more than half the memory available when it started
(the machine is shared): that is printed as such, never as a time. The run is always the size asked
for (default a million records); nothing scales it down.

The baseline is the least any reader of the run must do: every table's files read once with pyarrow
(no pandas). Baseline and summary alternate (A B, B A, ...); the ratio says what the analysis costs
on top of reading the bytes.

    python -m benchmarks.analysis_speed [--quick] [--queries N] [--repetitions N]
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import arguments, host_line, interleaved, private_cache, ratio_line, spread

SUMMARY_TARGET_S = 5.0
SUMMARY_TARGET_GIB = 4.0
REPORT_TARGET_S = 30.0
TARGET_RECORDS = 1_000_000
GUARD_SHARE = 0.5  # a worker is stopped beyond this share of the memory available when it started


# --- what a worker measures --------------------------------------------------------------


def read_plain(path: Path) -> dict[str, float]:
    """Every table of the run read with pyarrow alone (names and ids dictionary-encoded, as lockprof reads them)."""
    import pyarrow.parquet as pq

    from lockprof.store import CATEGORICAL, TABLES

    started = time.perf_counter()
    rows = sum(pq.read_table(path / t, read_dictionary=list(CATEGORICAL.get(t, ()))).num_rows
               for t in TABLES if any((path / t).glob("*.parquet")))
    return {"total_s": time.perf_counter() - started, "rows": rows}


def summary(path: Path) -> dict[str, float]:
    """What ``lockprof summary`` does after its imports: load the run, analyse it, print the tables."""
    import io

    from rich.console import Console

    from lockprof.analysis import load_run
    from lockprof.summary import render

    started = time.perf_counter()
    run = load_run(path)
    loaded = time.perf_counter()
    out = io.StringIO()
    render(run, Console(file=out, width=120))
    done = time.perf_counter()
    assert "Verdict" in out.getvalue()
    assert run.query_events_on_disk() is not None, "the summary read every ProfileEvent into pandas"
    return {"load_s": loaded - started, "analysis_s": done - loaded, "total_s": done - started}


def report(path: Path) -> dict[str, float]:
    """What ``lockprof report`` does after its imports, short of writing the file."""
    from lockprof.analysis import load_run
    from lockprof.report import render_report

    started = time.perf_counter()
    run = load_run(path)
    loaded = time.perf_counter()
    html = render_report(run)
    done = time.perf_counter()
    assert "<h2>Verdict" in html
    return {"load_s": loaded - started, "report_s": done - loaded, "total_s": done - started}


WORKERS = {"read": read_plain, "summary": summary, "report": report}


def worker(kind: str, path: Path) -> None:
    import resource

    started = time.perf_counter()
    # The imports a CLI run pays too; timed apart so the figures above them are the analysis alone.
    import lockprof.report  # noqa: F401
    import lockprof.summary  # noqa: F401

    imports = time.perf_counter() - started
    result = WORKERS[kind](path)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({**result, "imports_s": imports, "peak_rss_gib": peak / 2**30}), flush=True)


# --- the parent ---------------------------------------------------------------------------


def available_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class TooBig(Exception):
    """A worker stopped by the memory guard."""


def measure(kind: str, path: Path) -> dict[str, float]:
    """Run one worker; its JSON result, or TooBig when the memory guard stopped it."""
    limit = available_bytes() * GUARD_SHARE
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.analysis_speed", "--worker", kind, str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    highest = 0
    while proc.poll() is None:
        highest = max(highest, rss_bytes(proc.pid))
        if highest > limit:
            proc.kill()
            proc.wait()
            raise TooBig(f"{kind} stopped at {highest / 2**30:.1f} GiB RSS (guard: half the available memory, "
                         f"{limit / 2**30:.1f} GiB)")
        time.sleep(0.05)
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} worker failed ({proc.returncode}):\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1])


def figures(values: list[float]) -> str:
    s = spread(values)
    return f"median {s.median:.2f} (min-max {s.low:.2f}-{s.high:.2f})"


def listed(values: list[float]) -> str:
    return ", ".join(f"{x:.2f}" for x in values)


def judged(ok: bool, written: int) -> str:
    if written < TARGET_RECORDS:
        return f"not judged (under {TARGET_RECORDS:,} records)"
    return "met" if ok else "not met"


def main(argv: list[str] | None = None) -> int:
    parser = arguments(__doc__.splitlines()[0], repetitions=3)
    parser.add_argument("--queries", type=int, default=TARGET_RECORDS, help="query records in the synthetic run")
    parser.add_argument("--worker", nargs=2, metavar=("KIND", "RUN_DIR"), help=f"internal: one of {sorted(WORKERS)}")
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker[0], Path(args.worker[1]))
        return 0
    queries = 5_000 if args.quick else args.queries
    reps = 2 if args.quick else args.repetitions
    cache = private_cache("analysis")
    from benchmarks.synthetic_run import PROFILE_EVENTS, write_synthetic_run

    print(host_line(), flush=True)
    path = cache / "synthetic-run"
    started = time.perf_counter()
    written = write_synthetic_run(path, queries)
    size = sum(f.stat().st_size for f in path.rglob("*.parquet"))
    print(f"# synthetic run: {written} query records, {written * len(PROFILE_EVENTS)} query_events rows, "
          f"{size / 1e6:.0f} MB of Parquet, written in {time.perf_counter() - started:.1f} s; "
          f"{available_bytes() / 2**30:.1f} GiB available", flush=True)
    try:
        pairs = interleaved(reps, lambda: measure("read", path), lambda: measure("summary", path))
        reports = [measure("report", path) for _ in range(reps)]
    except TooBig as exc:
        print(f"RESULT analysis_speed: {written} records NOT MEASURED: {exc}", flush=True)
        return 1
    plain = [a["total_s"] for a, _ in pairs]
    summ = [b for _, b in pairs]
    total = [b["total_s"] for b in summ]
    memory = [b["peak_rss_gib"] for b in summ]
    print(f"# seconds per repetition: plain pyarrow read {listed(plain)}; load_run "
          f"{listed([b['load_s'] for b in summ])}; summary after loading {listed([b['analysis_s'] for b in summ])}; "
          f"imports before either {listed([b['imports_s'] for b in summ])} (not counted)", flush=True)
    print(ratio_line("analysis_speed summary/plain pyarrow read time", [b / a for a, b in zip(plain, total)]))
    time_s, mem = spread(total), spread(memory)
    print(f"RESULT analysis_speed summary: load_run+summary {figures(total)} s for {written} records = "
          f"{written / time_s.median:,.0f} records/s; peak RSS {figures(memory)} GiB; "
          f"target < {SUMMARY_TARGET_S:g} s: {judged(time_s.high < SUMMARY_TARGET_S, written)}; "
          f"target < {SUMMARY_TARGET_GIB:g} GiB: {judged(mem.high < SUMMARY_TARGET_GIB, written)}", flush=True)
    rtotal = [r["total_s"] for r in reports]
    rmemory = [r["peak_rss_gib"] for r in reports]
    print(f"RESULT analysis_speed report: load_run+render_report {figures(rtotal)} s (render_report alone "
          f"{figures([r['report_s'] for r in reports])} s) for {written} records; peak RSS {figures(rmemory)} GiB; "
          f"target < {REPORT_TARGET_S:g} s: {judged(spread(rtotal).high < REPORT_TARGET_S, written)}", flush=True)
    print(f"RESULT analysis_speed memory: peak RSS summary {mem.high:.2f} GiB, report {max(rmemory):.2f} GiB "
          f"(largest of {reps} worker processes each); target < {SUMMARY_TARGET_GIB:g} GiB for the summary: "
          f"{judged(mem.high < SUMMARY_TARGET_GIB, written)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
