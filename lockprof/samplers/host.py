"""How busy the machine was while a level ran, and how much of that was the run's own work.

On a shared machine other processes take cores from the engine's threads, and the
CPU-wait the analysis reports then includes their load. The sampler reads the
machine's busy time from ``/proc/stat`` and the CPU time of the run's processes (the
orchestrator and every process below it: engine workers, whose threads include the
embedded engine's, py-spy, launched servers) from ``/proc/<pid>/stat``, from its own
thread, and interpolates both to the level's window once it is known: the window opens
when the warm-up ends, which only the driver knows. Busy time counts user, nice and
system time; interrupts, I/O wait and time stolen by a hypervisor are not counted.

It runs for every level, samplers or not, so a level and its no-samplers twin carry the
same cost. Where ``/proc`` is missing the shares are NaN, never zero.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
from pathlib import Path

import numpy as np

from lockprof.clock import RunClock

PROC = Path("/proc")
POLL_S = 0.1  # a few file reads per poll; the window's ends are interpolated between polls
COLUMNS = ("host_cpus", "load_avg_start", "load_avg_end", "run_cpu_share", "host_other_cpu_share")


def busy_ticks(proc: Path = PROC) -> tuple[int, int] | None:
    """(user + nice + system ticks summed over all CPUs, number of CPUs) from /proc/stat, or None."""
    try:
        lines = (proc / "stat").read_text().splitlines()
        total = lines[0].split()
        cpus = sum(1 for line in lines if line.startswith("cpu") and line[3:4].isdigit())
        if total[0] != "cpu" or not cpus:
            return None
        return int(total[1]) + int(total[2]) + int(total[3]), cpus
    except (OSError, IndexError, ValueError):
        return None


def process_ticks(pid: int, proc: Path = PROC) -> int | None:
    """utime + stime of a process (all its threads), in clock ticks; None once it is gone."""
    try:
        text = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()  # the command name may hold spaces and parentheses
    return int(fields[11]) + int(fields[12])


def process_tree(root: int, proc: Path = PROC) -> list[int]:
    """``root`` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def load_average() -> float:
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):  # a platform without one
        return math.nan


class HostSampler:
    """A context manager around a level: polls the machine's busy time, the run's CPU time and the load
    average; :meth:`window` then gives the level's columns (see :data:`COLUMNS`)."""

    def __init__(self, clock: RunClock, root_pid: int | None = None, interval_s: float = POLL_S,
                 proc: Path = PROC) -> None:
        self.clock = clock
        self.root_pid = root_pid or os.getpid()
        self.interval_s = interval_s
        self.proc = proc
        self.cpus = os.cpu_count() or 0
        self.pids: list[int] = []
        self.last: dict[int, int] = {}  # a process that ends keeps the ticks it had: the sums never go back
        self.rows: list[tuple[float, float, float, float]] = []  # (t_s, host busy, run's, load average)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="HostSampler", daemon=True)

    def poll(self) -> None:
        t = self.clock.now()
        host = busy_ticks(self.proc)
        if host is None:
            self.rows.append((t, math.nan, math.nan, load_average()))
            return
        self.cpus = host[1]
        for pid in self.pids:
            ticks = process_ticks(pid, self.proc)
            if ticks is not None:
                self.last[pid] = ticks
        own = float(sum(self.last.values())) if self.last else math.nan  # none of the run's processes readable
        self.rows.append((t, float(host[0]), own, load_average()))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.poll()

    def __enter__(self) -> HostSampler:
        with contextlib.suppress(OSError):  # no /proc: the shares stay NaN
            self.pids = process_tree(self.root_pid, self.proc)
        self.poll()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.poll()

    def window(self, start_s: float, end_s: float) -> dict[str, float | int]:
        """The columns for the window [start_s, end_s]: CPU shares are of all the machine's cores (1.0 = every
        core busy for the whole window); the other processes' share is what the machine was busy beyond the
        run's own processes, never below zero (the kernel counts the two a little differently)."""
        rows = np.array(self.rows, dtype=float).reshape(-1, 4)
        t, host, own, load = rows.T
        at = np.array([start_s, end_s])
        capacity = (end_s - start_s) * self.cpus * os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.0
        run_share = other_share = math.nan
        if capacity > 0 and len(t) and np.isfinite(host).all() and np.isfinite(own).all():
            host_ticks = np.diff(np.interp(at, t, host))[0]
            own_ticks = np.diff(np.interp(at, t, own))[0]
            run_share = float(own_ticks / capacity)
            other_share = float(max(host_ticks - own_ticks, 0.0) / capacity)
        start_load, end_load = np.interp(at, t, load) if len(t) else (math.nan, math.nan)
        return {"host_cpus": self.cpus, "load_avg_start": float(start_load), "load_avg_end": float(end_load),
                "run_cpu_share": run_share, "host_other_cpu_share": other_share}
