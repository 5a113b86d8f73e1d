"""py-spy on the load generator: where do the driver's threads spend their time?

The driver is Python, so it could itself be the bottleneck (the GIL). py-spy
samples the worker process from outside, without pausing it, idle threads
included; each sample is classed by its innermost frame: inside the engine call
(the GIL is released there, and the thread often just waits for the engine's own
threads), waiting on purpose (the driver's schedule, barriers), or in Python code,
which needs the GIL: running, or runnable and waiting for it. Python samples per
sampling tick add up to the driver's demand for the one GIL: near 1 or above
means the driver, not the engine, limits the load.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from lockprof import reaper
from lockprof.dirformat.tables import DRIVER, DRIVER_STACKS
from lockprof.workerproc import die_with_parent

RAW_LINE = re.compile(r"^thread \((?P<tid>\w+)\)(?:: (?P<name>[^;]*))?;(?P<stack>.*) (?P<count>\d+)$")
ENGINE_FILES = ("chdb/", "clickhouse_connect/")
WAITING = ("(threading.py:", "(queue.py:", "(selectors.py:")
TEMP_PREFIX = "lockprof-pyspy-"  # + the owning process id, so a directory whose owner died can be removed
TABLES = (DRIVER_STACKS, DRIVER)  # what the orchestrator stores of each level (lockprof.run)


def remove_stale_dirs() -> None:
    """Remove py-spy directories left by lockprof processes that were killed before they could clean up."""
    for path in Path(tempfile.gettempdir()).glob(f"{TEMP_PREFIX}*"):
        pid = path.name[len(TEMP_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(path, ignore_errors=True)


def py_spy_path() -> str | None:
    """py-spy installed beside this Python, else on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def classify(stack: str) -> str:
    leaf = stack.rsplit(";", 1)[-1]
    if any(f"({prefix}" in leaf or f" {prefix}" in leaf for prefix in ENGINE_FILES):
        return "engine"
    if any(marker in leaf for marker in WAITING):
        return "waiting"
    return "python"


def parse_raw(text: str) -> pd.DataFrame:
    """py-spy's raw (folded) output with --threads -> one row per thread and stack."""
    rows = []
    for line in text.splitlines():
        m = RAW_LINE.match(line.strip())
        if m:
            stack = m["stack"]
            rows.append({"thread": m["name"] or m["tid"], "stack": stack, "samples": int(m["count"]),
                         "category": classify(stack)})
    return pd.DataFrame(rows, columns=["thread", "stack", "samples", "category"])


def summarize(stacks: pd.DataFrame, seconds: float, rate_hz: int) -> dict[str, float]:
    """Share of sampling ticks in which driver threads were in the engine or in Python.

    The ticks are those py-spy took, not ``seconds * rate_hz``: on a loaded machine py-spy starts late and
    falls behind its rate, and dividing by the nominal count would understate every share. With
    ``--idle`` every tick samples every thread, so the thread seen most often was seen in every tick.
    """
    nominal = max(seconds * rate_hz, 1.0)
    per_thread = stacks.groupby("thread")["samples"].sum()
    ticks = min(nominal, float(per_thread.max())) if len(per_thread) and per_thread.max() > 0 else nominal
    driver = stacks[stacks["thread"].str.startswith("lockprof-")]
    by = driver.groupby("category")["samples"].sum()
    return {
        "engine_threads": float(by.get("engine", 0) / ticks),
        "gil_demand": float(by.get("python", 0) / ticks),
        "waiting_threads": float(by.get("waiting", 0) / ticks),
        "samples": int(stacks["samples"].sum()),
    }


def to_speedscope(stacks: pd.DataFrame, name: str) -> dict:
    """A speedscope 'sampled' profile per thread from folded stacks."""
    frames: list[dict] = []
    index: dict[str, int] = {}
    profiles = []
    for thread, group in stacks.groupby("thread"):
        samples, weights = [], []
        for stack, count in zip(group["stack"], group["samples"]):
            ids = []
            for frame in stack.split(";"):
                if frame not in index:
                    index[frame] = len(frames)
                    frames.append({"name": frame})
                ids.append(index[frame])
            samples.append(ids)
            weights.append(int(count))
        profiles.append({"type": "sampled", "name": str(thread), "unit": "none", "startValue": 0,
                         "endValue": int(sum(weights)), "samples": samples, "weights": weights})
    return {"$schema": "https://www.speedscope.app/file-format-schema.json", "name": name,
            "shared": {"frames": frames}, "profiles": profiles}


class PySpySampler:
    """Record a process with py-spy while a level runs. If py-spy cannot attach, ``error`` says why."""

    def __init__(self, pid: int, rate_hz: int = 20) -> None:
        self.pid = pid
        self.rate_hz = rate_hz
        self.error: str | None = None
        self.stacks = pd.DataFrame(columns=["thread", "stack", "samples", "category"])
        self.seconds = 0.0
        self._proc: subprocess.Popen | None = None
        remove_stale_dirs()
        self._dir = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-"))
        reaper.watch(self._dir)  # gone with lockprof even if it is killed with -9

    def __enter__(self) -> PySpySampler:
        exe = py_spy_path()
        if exe is None:
            self.error = "py-spy is not installed"
            return self
        self._raw = self._dir / "raw.txt"
        self._log = open(self._dir / "log.txt", "wb")  # noqa: SIM115  (closed in __exit__)
        self._proc = subprocess.Popen(
            [exe, "record", "--pid", str(self.pid), "--format", "raw", "--output", str(self._raw),
             "--rate", str(self.rate_hz), "--threads", "--idle", "--nonblocking"],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # a terminal's Ctrl-C must not stop it before we read it
            preexec_fn=die_with_parent if sys.platform == "linux" else None,  # ... but our death does
        )
        self._started = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._stop()
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)
            reaper.release(self._dir)

    def _stop(self) -> None:
        """Stop py-spy and read what it recorded (or why it could not)."""
        if self._proc is None:
            return
        self.seconds = time.monotonic() - self._started
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
        try:
            self._proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._log.close()
        if self._raw.exists():
            self.stacks = parse_raw(self._raw.read_text(errors="replace"))
        else:
            log = (self._dir / "log.txt").read_text(errors="replace").strip().splitlines()
            reason = next((ln for ln in log if "rror" in ln or "ermission" in ln), log[-1] if log else "no output")
            self.error = f"py-spy could not record process {self.pid}: {reason}"

    def summary(self) -> dict[str, float]:
        return summarize(self.stacks, self.seconds, self.rate_hz)

    def write(self, folder: Path, part: str) -> None:
        """Folded text and speedscope JSON beside the run's tables."""
        from lockprof.store import atomic_write_bytes

        folded = "\n".join(f"{t};{s} {n}" for t, s, n in zip(self.stacks["thread"], self.stacks["stack"],
                                                             self.stacks["samples"]))
        atomic_write_bytes(folder / f"{part}.folded", (folded + "\n").encode())
        atomic_write_bytes(folder / f"{part}.speedscope.json", json.dumps(to_speedscope(self.stacks, part)).encode())
