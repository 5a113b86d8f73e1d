"""Forecast validation: what the capacity model predicts for 2 cores from a run on 1, against a run on 2.

One interleaved run pins each engine's worker to 1 core and to 2 (``--cpus 1,2``), so every engine runs as
``<label>@1cpu`` and ``<label>@2cpu`` in alternating windows. The capacity model
(:mod:`lockprof.analysis.capacity`) is fed only the 1-core side and asked for 2 cores at the highest concurrency
the 2-core side measured; the benchmark prints predicted against measured throughput and exclusive-lock wait per
query (the wait at the throughput the 2-core side reached, so its error is the queueing model's own), and the
error of each.

What this can validate on a 2-core machine: the CPU line (CPU per query and efficiency carried from one core to
two) and the queueing wait at a utilization a lock reaches on two cores. What it cannot: a lock ceiling being
reached (no shipped scenario saturates an exclusive lock on two cores), and anything that changes with many
cores (caches, memory bandwidth, NUMA). The errors are printed, not judged against a target: they are the
model's, measured.

Cases: the main scenario's namespace_day (10 000 parts) on 25.8 (readers take the parts lock exclusively) and on
26.9 (the embedded default; shared), and the writer case (``scenarios/ingest_erosion.py``) on 26.9. Runs use
lockprof's cache like any run (the datasets are the main scenario's; 25.8 is installed into it once);
``--quick`` runs the tiny test scenario on the embedded engine in a private cache.

    python -m benchmarks.forecast_validation [--quick] [--repetitions N] [--run DIR ...] [--keep DIR]
"""

from __future__ import annotations

import argparse
import atexit
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.common import SCENARIOS, TINY_SCENARIO, host_line, private_cache
from lockprof.analysis.capacity import forecast_check
from lockprof.analysis.load import Relabel, Run, combine, load_run

CASES = {  # name -> (scenario, schema, engines)
    "main": (SCENARIOS / "namespace_partitioning.py", "namespace_day", ["25.8", "embedded"]),
    "writer": (SCENARIOS / "ingest_erosion.py", "namespace_day", ["embedded"]),
}


def measure(case: str, out: Path, repetitions: int, quick: bool) -> Path:
    """One interleaved run of the case on 1 and 2 cores, through the CLI as a user runs it."""
    scenario, schema, engines = CASES[case]
    if quick:
        scenario, schema, engines = TINY_SCENARIO, "namespace_day", ["embedded"]
    cmd = [sys.executable, "-m", "lockprof", "run", str(scenario), "--schema", schema, "--cpus", "1,2",
           "--concurrency", "1,2", "--repetitions", str(repetitions), "--out", str(out)]
    for engine in engines:
        cmd += ["--engine", engine]
    if quick:
        cmd += ["--duration", "1", "--warmup", "0.1"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode not in (0, 5):  # 5: a level failed, a result the forecast still reads; else nothing to judge
        sys.exit(f"forecast_validation {case}: the run failed (exit {result.returncode}):\n{result.stderr[-2000:]}")
    return out


def sides(run: Run) -> list[tuple[str, Run, Run]]:
    """(engine, its 1-core side, its 2-core side) for every engine that ran on both, each side relabelled to the
    engine's own label so the model's forecast from one is checked against the other
    (:func:`lockprof.analysis.capacity.forecast_check`)."""
    labels = set(run.levels["engine"].astype(str))
    out = []
    for one in sorted(labels):
        base = one.removesuffix("@1cpu")
        if one.endswith("@1cpu") and f"{base}@2cpu" in labels:
            out.append((base, combine([run], [Relabel(renames=((one, base),))]),
                        combine([run], [Relabel(renames=((f"{base}@2cpu", base),))])))
    return out


def lines(case: str, run: Run) -> list[str]:
    """One RESULT line per engine and quantity: 2 cores predicted from the 1-core side, measured, the error."""
    out = []
    for engine, one, two in sides(run):
        check = forecast_check(one, two)
        for _, r in check[check["engine"] == engine].iterrows():
            what = "throughput q/s" if r["metric"] == "throughput_qps" else f"{r['lock']} exclusive wait µs/query"
            error = f"{r['relative_error']:+.0%}" if np.isfinite(r["relative_error"]) else "n/a (nothing measured)"
            out.append(f"RESULT forecast_validation {case} {engine} {r['schema']} c={r['concurrency']} {what}: "
                       f"2 cores predicted from 1 {r['predicted']:.3g}, measured {r['measured']:.3g}, error {error}")
    if not out:
        out.append(f"RESULT forecast_validation {case}: no engine ran on both 1 and 2 cores")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the harness, measures nothing")
    parser.add_argument("--repetitions", type=int, default=3, help="repetitions of every level (default 3)")
    parser.add_argument("--case", choices=sorted(CASES), action="append", help="only this case (repeatable)")
    parser.add_argument("--run", type=Path, action="append", default=[],
                        help="judge a run made earlier with --cpus 1,2 instead of measuring (repeatable)")
    parser.add_argument("--keep", type=Path, help="keep the measured run directories here (else removed)")
    args = parser.parse_args(argv)
    if args.quick:
        private_cache("forecast")  # the tiny scenario's datasets, not the user's cache
    print(host_line(), flush=True)
    if args.run:
        runs = [(path.name, path) for path in args.run]
    else:
        where = args.keep or Path(tempfile.mkdtemp(prefix="lockprof-bench-forecast-"))
        if not args.keep:
            atexit.register(shutil.rmtree, where, ignore_errors=True)
        cases = ["main"] if args.quick else (args.case or sorted(CASES))
        runs = [(case, measure(case, where / case, args.repetitions, args.quick)) for case in cases]
    for case, path in runs:
        print(f"# {case}: {path.name}, 1 and 2 cores pinned by affinity, interleaved", flush=True)
        for line in lines(case, load_run(path)):
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
