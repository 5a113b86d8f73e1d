"""Run the README's test command N times in a row and count how often it passed.

``python -m benchmarks.suite_loop --runs 10`` runs ``python -m pytest -q`` (the README's
second command, with this interpreter) ten times, one after another, and prints one
``RUN`` line per run: its pass/fail counts, exit code, duration and the machine's 1-minute
load average at the start, on average and at its peak while it ran (sampled every few
seconds), then a ``RESULT`` line. A suite that passes only on a quiet machine shows up
here as a failed run, with the failing tests named.

``--burn K`` starts K CPU-burning processes for the whole loop, to load an otherwise idle
machine (one per core is a heavy load). It is off by default: on a machine shared with
others, their work is load enough, and burners would only starve them. Arguments after
``--`` go to pytest (for example ``-- -m fast``). Each run's output is kept under
``--log-dir``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common import ROOT, host_line

COUNTS = ("passed", "failed", "errors", "skipped", "xfailed", "xpassed")


@dataclass
class RunResult:
    """One run of the suite: what pytest reported, and how loaded the machine was meanwhile."""

    number: int
    exit_code: int
    duration_s: float
    counts: dict[str, int]
    load_start: float
    load_mean: float
    load_max: float
    failures: list[str] = field(default_factory=list)
    log: Path | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.counts["failed"] == 0 and self.counts["errors"] == 0

    def line(self, runs: int) -> str:
        counts = " ".join(f"{k}={self.counts[k]}" for k in ("passed", "failed", "errors", "skipped"))
        return (f"RUN {self.number}/{runs} {'pass' if self.ok else 'FAIL'} {counts} exit={self.exit_code} "
                f"duration={self.duration_s:.0f}s load1 start={self.load_start:.1f} mean={self.load_mean:.1f} "
                f"max={self.load_max:.1f}")


def parse_counts(output: str) -> dict[str, int]:
    """The counts of pytest's last summary line ("3 failed, 190 passed, 5 skipped in 480.1s")."""
    counts = dict.fromkeys(COUNTS, 0)
    summary = [ln for ln in output.splitlines() if re.search(r"\d+ (passed|failed|error|skipped)", ln)]
    if summary:
        for number, word in re.findall(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed)", summary[-1]):
            counts["errors" if word.startswith("error") else word] += int(number)
    return counts


def parse_failures(output: str) -> list[str]:
    """The test ids of pytest's short summary (``-ra``): FAILED and ERROR lines."""
    return [m.group(1) for m in re.finditer(r"^(?:FAILED|ERROR) (\S+)", output, re.MULTILINE)]


class LoadWatch:
    """The 1-minute load average, sampled from a thread while a run lasts."""

    def __init__(self, every_s: float = 5.0) -> None:
        self.samples: list[float] = [os.getloadavg()[0]]
        self._every = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self._every):
            self.samples.append(os.getloadavg()[0])

    def __enter__(self) -> LoadWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(os.getloadavg()[0])


def run_once(number: int, pytest_args: list[str], log_dir: Path) -> RunResult:
    """Run the suite once from the repository root, its output going to a log file."""
    log = log_dir / f"run-{number:02d}.log"
    command = [sys.executable, "-m", "pytest", "-q", *pytest_args]
    started = time.monotonic()
    with LoadWatch() as load, open(log, "w") as out:
        out.write(f"# {' '.join(command)}  ({dt.datetime.now(dt.timezone.utc).isoformat()})\n")
        out.flush()
        exit_code = subprocess.run(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT).returncode
    duration = time.monotonic() - started
    output = log.read_text(errors="replace")
    return RunResult(number, exit_code, duration, parse_counts(output), load.samples[0],
                     sum(load.samples) / len(load.samples), max(load.samples), parse_failures(output), log)


def start_burners(count: int) -> list[subprocess.Popen]:
    """Processes that each keep one core busy until stopped."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
            for _ in range(count)]


def stop_burners(burners: list[subprocess.Popen]) -> None:
    for proc in burners:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="Arguments after -- go to pytest.")
    parser.add_argument("--runs", type=int, default=10, help="how many runs in a row (default 10)")
    parser.add_argument("--burn", type=int, default=0, metavar="K",
                        help="K CPU-burning processes during the loop, for an otherwise idle machine (default 0)")
    parser.add_argument("--stop-on-failure", action="store_true", help="stop after the first failed run")
    parser.add_argument("--log-dir", type=Path, help="where each run's output goes (default: a new temporary "
                                                     "directory, printed)")
    argv = list(sys.argv[1:] if argv is None else argv)
    pytest_args = argv[argv.index("--") + 1:] if "--" in argv else []
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    if args.runs < 1 or args.burn < 0:
        parser.error("--runs must be at least 1 and --burn at least 0")
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="lockprof-suite-loop-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    print(host_line(), flush=True)
    print(f"LOOP {args.runs} runs of: python -m pytest -q {' '.join(pytest_args)}".rstrip()
          + f"; {args.burn} CPU burners; logs in {log_dir}", flush=True)
    burners = start_burners(args.burn)
    results: list[RunResult] = []
    try:
        for number in range(1, args.runs + 1):
            result = run_once(number, pytest_args, log_dir)
            results.append(result)
            print(result.line(args.runs), flush=True)
            for test in result.failures:
                print(f"  failed: {test}", flush=True)
            if args.stop_on_failure and not result.ok:
                break
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    finally:
        stop_burners(burners)
    passed = sum(r.ok for r in results)
    durations = sorted(r.duration_s for r in results)
    if results:
        print(f"RESULT suite_loop: {passed}/{len(results)} runs passed; duration {durations[0]:.0f}-"
              f"{durations[-1]:.0f} s; mean load1 per run {min(r.load_mean for r in results):.1f}-"
              f"{max(r.load_mean for r in results):.1f}, peak {max(r.load_max for r in results):.1f}", flush=True)
    return 0 if results and passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
