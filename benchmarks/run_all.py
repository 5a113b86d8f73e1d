"""Run every benchmark, each in its own process (chDB hosts one engine per process), and echo what it prints.

    python -m benchmarks [--quick] [--big] [--only NAME ...]

``--big`` adds the 100 000-part build (minutes, several GB of disk); it is left out by
default. Exit status is the number of benchmarks that failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from benchmarks.common import ROOT, host_line

BENCHMARKS = ("driver_overhead", "sampler_overhead", "dataset_build", "analysis_speed", "ab_level",
              "ab_false_positives", "ab_power", "forecast_validation")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the harness, measures nothing")
    parser.add_argument("--big", action="store_true", help="also build the 100 000-part table")
    parser.add_argument("--only", nargs="+", choices=(*BENCHMARKS, "big_table"), help="run only these")
    args = parser.parse_args(argv)
    names = list(args.only or BENCHMARKS)
    if args.big and "big_table" not in names:
        names.append("big_table")
    print(host_line(), flush=True)
    failed = []
    for name in names:
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        command = [sys.executable, "-m", f"benchmarks.{name}", *(["--quick"] if args.quick else [])]
        code = subprocess.call(command, cwd=ROOT)
        print(f"== {name}: {'ok' if code == 0 else f'FAILED (exit {code})'} in {time.perf_counter() - started:.0f} s",
              flush=True)
        if code:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return len(failed)


if __name__ == "__main__":
    sys.exit(main())
