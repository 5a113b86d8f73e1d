"""CPU time and run-queue time of the engine process's threads, by thread name, from ``/proc``.

A query slowed by contention is either waiting off the CPU (a lock, I/O) or runnable and
waiting for a core. ProfileEvents count the first per query; the kernel counts both per
thread: ``utime + stime`` in ``/proc/PID/task/TID/stat`` (clock ticks) and, in
``schedstat``, the nanoseconds spent runnable on a run queue. An engine's threads of
one job share a name (``comm``: its pipeline executors, merges, the global pool), so
each poll sums the interval's deltas by name: one row per poll and thread name, with
the number of threads that had it. The embedded engine runs in the worker, so the
worker's own Python threads appear too, under their own names.

A thread first seen after the first poll started after it: all its time falls in the
interval it appeared in. A thread that ends between two polls takes its last
interval with it. The kernel adds a run-queue wait when it ends (the thread gets a
core), so a long wait shows whole in the interval it ended in: over a level the sums
are right, a single interval may hold more than its length. Where ``schedstat`` is
missing (a kernel without schedstats) the run-queue time is NaN; where the engine runs
on another machine the sampler says it cannot read it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from lockprof.clock import RunClock
from lockprof.dirformat.tables import Column, Table, register_table
from lockprof.samplers.base import SamplerContext
from lockprof.samplers.polling import PollingSampler

PROC = Path("/proc")
TABLE = register_table(Table("threads", "--samplers threads: the engine process's threads by name, per poll", (
    Column("t_s", "float", "when the poll ended, run clock s", by="sampler"),
    Column("interval_s", "float", "since the previous poll", by="sampler"),
    Column("thread", "str", "the thread name (comm) the threads share", by="sampler"),
    Column("threads", "int", "threads with that name at the poll", by="sampler"),
    Column("cpu_s", "float", "their user + system CPU time in the interval", by="sampler"),
    Column("runqueue_s", "float", "their time runnable, waiting for a core (NaN without schedstat)", by="sampler"),
    Column("engine", "str", "engine label"), Column("schema", "str"), Column("concurrency", "int"),
    Column("repetition", "int"),
), categorical=("thread",)))

Task = tuple[str, int, float]  # (thread name, utime + stime in ticks, run-queue ns or NaN)


def read_tasks(pid: int, proc: Path = PROC) -> dict[tuple[int, int], Task]:
    """Every thread of ``pid``, keyed by (thread id, start time) so a reused thread id is a new thread."""
    tasks: dict[tuple[int, int], Task] = {}
    for entry in os.scandir(proc / str(pid) / "task"):
        try:
            with open(os.path.join(entry.path, "stat"), "rb") as fh:
                stat = fh.read().decode(errors="replace")
        except OSError:
            continue  # ended meanwhile
        comm = stat[stat.index("(") + 1:stat.rindex(")")]  # the name may hold spaces and parentheses
        fields = stat[stat.rindex(")") + 2:].split()
        try:
            with open(os.path.join(entry.path, "schedstat"), "rb") as fh:
                runqueue = float(fh.read().split()[1])
        except (OSError, IndexError, ValueError):
            runqueue = math.nan
        tasks[(int(entry.name), int(fields[19]))] = (comm, int(fields[11]) + int(fields[12]), runqueue)
    return tasks


class ThreadsSampler(PollingSampler):
    """Polls ``/proc/<engine pid>/task`` (see the module's docstring); ``pid`` None: the engine is elsewhere."""

    name = "threads"
    table = TABLE

    def __init__(self, pid: int | None, clock: RunClock, interval_s: float = 0.2, proc: Path = PROC) -> None:
        super().__init__(None, clock, interval_s)
        self.pid = pid
        self.proc = proc
        self.tick_s = 1.0 / os.sysconf("SC_CLK_TCK")
        self._last: dict[tuple[int, int], Task] | None = None
        self._last_t = 0.0

    @classmethod
    def open(cls, ctx: SamplerContext) -> ThreadsSampler:
        return cls(ctx.engine_pid, ctx.clock, ctx.interval_s)

    def poll(self) -> None:
        if self.pid is None:
            raise RuntimeError("the engine runs in no process of this machine: its threads cannot be read")
        tasks = read_tasks(self.pid, self.proc)
        t = self.clock.now()
        if self._last is not None:
            by_name: dict[str, list[float]] = {}  # name -> [threads, cpu ticks, run-queue ns]
            for key, (comm, ticks, runqueue) in tasks.items():
                _, last_ticks, last_runqueue = self._last.get(key, ("", 0, 0.0))
                sums = by_name.setdefault(comm, [0, 0.0, 0.0])
                sums[0] += 1
                sums[1] += ticks - last_ticks
                sums[2] += runqueue - last_runqueue
            self.rows.extend({"t_s": t, "interval_s": t - self._last_t, "thread": comm, "threads": int(n),
                              "cpu_s": cpu * self.tick_s, "runqueue_s": runqueue / 1e9}
                             for comm, (n, cpu, runqueue) in sorted(by_name.items()))
        self._last, self._last_t = tasks, t
