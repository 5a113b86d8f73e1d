"""A long fuzzing session: the suite's fuzzer (tests/engine/test_fuzz.py) with many more, freshly random cases.

    python -m benchmarks.fuzz [--scale 20] [--quick]

CI runs the same properties with a fixed, small set of cases; this runs ``--scale`` times as many,
different on every call, and prints how many cases ran by exit code. Exit status is pytest's.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from benchmarks.common import ROOT, host_line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=20.0, help="times the suite's number of cases (default 20)")
    parser.add_argument("--quick", action="store_true", help="scale 1: checks the harness")
    args = parser.parse_args(argv)
    scale = 1.0 if args.quick else args.scale
    print(host_line(), flush=True)
    env = {**os.environ, "LOCKPROF_FUZZ_SCALE": str(scale), "LOCKPROF_FUZZ_RANDOM": "1"}
    started = time.perf_counter()
    code = subprocess.call([sys.executable, "-m", "pytest", "-q", "-s", "tests/engine/test_fuzz.py"], cwd=ROOT, env=env)
    print(f"FUZZ scale {scale:g}: {'passed' if code == 0 else 'FAILED'} in {time.perf_counter() - started:.0f} s",
          flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
