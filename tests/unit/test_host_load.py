"""How busy the machine was during each level: the sampler on a made-up /proc, and the summary's warning."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
from synthetic_runs import Level, make_run

from lockprof.analysis import level_summary
from lockprof.analysis.health import run_warnings
from lockprof.analysis.host import BUSY_OTHER_SHARE, busy_host
from lockprof.samplers.host import COLUMNS, HostSampler, process_tree

TICK = os.sysconf("SC_CLK_TCK")


# --- the sampler, on a made-up /proc ------------------------------------------------------------------------------
class ScriptedClock:
    """The times at which the polls happen, one per call."""

    def __init__(self, times: list[float]) -> None:
        self.times = iter(times)

    def now(self) -> float:
        return next(self.times)


def fake_proc(root: Path, busy: int, procs: dict[int, tuple[int, int]]) -> Path:
    """/proc with two CPUs whose user+nice+system ticks sum to ``busy``; procs: pid -> (ppid, utime+stime)."""
    root.mkdir(exist_ok=True)
    (root / "stat").write_text(f"cpu  {busy - 20} 10 10 5000 7 3 2 99 0 0\ncpu0 1 1 1 1\ncpu1 1 1 1 1\nintr 1\n")
    for pid, (ppid, ticks) in procs.items():
        (root / str(pid)).mkdir(exist_ok=True)
        fields = ["S", str(ppid), *["0"] * 9, str(ticks - 1), "1", "0", "0"]  # utime, stime: fields 14 and 15
        (root / str(pid) / "stat").write_text(f"{pid} (a (strange) name) {' '.join(fields)}\n")
    for gone in {int(p.name) for p in root.iterdir() if p.name.isdigit()} - set(procs):
        (root / str(gone) / "stat").unlink()
        (root / str(gone)).rmdir()
    return root


def test_the_run_is_its_root_process_and_everything_below_it(tmp_path):
    proc = fake_proc(tmp_path / "proc", 0, {1: (0, 0), 100: (1, 0), 101: (100, 0), 102: (101, 0), 200: (1, 0)})
    assert sorted(process_tree(100, proc)) == [100, 101, 102]


def test_window_shares_are_interpolated_and_split_between_the_run_and_the_rest(tmp_path):
    proc = tmp_path / "proc"
    fake_proc(proc, 1000, {100: (1, 50), 101: (100, 10), 200: (1, 0)})
    sampler = HostSampler(ScriptedClock([0.0, 1.0, 2.0]), root_pid=100, proc=proc)
    sampler.pids = process_tree(100, proc)
    sampler.poll()
    # In each second the machine is busy 1.5 of its 2 CPUs; the run's two processes use 0.5 of a CPU.
    fake_proc(proc, 1000 + int(1.5 * TICK), {100: (1, 50 + TICK // 4), 101: (100, 10 + TICK // 4), 200: (1, 0)})
    sampler.poll()
    # The child ends in the second second: what it used before still counts for the run, nothing goes back.
    fake_proc(proc, 1000 + 3 * TICK, {100: (1, 50 + TICK), 200: (1, 0)})
    sampler.poll()
    out = sampler.window(0.5, 1.5)
    assert set(out) == set(COLUMNS)
    assert out["host_cpus"] == 2
    assert out["run_cpu_share"] == pytest.approx((0.5 * 0.5 + 0.75 * 0.5) / 2)  # the run: 0.5, then 0.75 CPU
    assert out["host_other_cpu_share"] == pytest.approx(0.75 - out["run_cpu_share"])


def test_without_proc_the_shares_are_nan_not_zero(tmp_path):
    sampler = HostSampler(ScriptedClock([0.0, 1.0]), proc=tmp_path / "nothing")
    sampler.pids = []
    sampler.poll()
    sampler.poll()
    out = sampler.window(0.0, 1.0)
    assert math.isnan(out["run_cpu_share"]) and math.isnan(out["host_other_cpu_share"])
    assert out["host_cpus"] == os.cpu_count()


# --- the summary's warning ---------------------------------------------------------------------------------------
def run_with_host_load(shares: list[float], loads: list[float], cpus: int = 2):
    """A synthetic run of day c=1, 2, 8 whose levels carry these shares of other processes and load averages."""
    run = make_run([Level("day", c, queries=100, window_s=2.0) for c in (1, 2, 8)])
    run.levels = run.levels.assign(host_cpus=cpus, load_avg_start=loads, load_avg_end=loads,
                                   run_cpu_share=0.3, host_other_cpu_share=shares)
    return run


def busy_warnings(run) -> list[str]:
    return [w for w in run_warnings(run, level_summary(run)) if "machine was busy" in w]


def test_a_busy_machine_is_warned_about_naming_its_worst_level():
    run = run_with_host_load([0.1, 0.4, 0.62], [1.0, 3.0, 5.1])
    assert busy_warnings(run) == [
        "the machine was busy during day c=8 [embedded]: other processes used 62% of its 2 cores (load average 5.1); "
        f"CPU-wait figures include their load; 2 of its 3 levels were above {BUSY_OTHER_SHARE:.0%}"
    ]


@pytest.mark.parametrize("shares", [[0.1, 0.2, BUSY_OTHER_SHARE], [0.1, math.nan, 0.05], [math.nan] * 3])
def test_a_quiet_or_unknown_machine_gets_no_warning(shares):
    assert busy_warnings(run_with_host_load(shares, [9.0, 9.0, 9.0])) == []  # the run's own threads load it too


def test_a_run_from_before_the_host_columns_still_summarizes():
    run = make_run([Level("day", c, queries=100, window_s=2.0) for c in (1, 2)])
    assert "host_other_cpu_share" not in run.levels
    assert busy_host(run.levels).empty
    assert busy_warnings(run) == []


def test_observe_mode_is_not_warned_about_the_server_it_watches():
    run = run_with_host_load([0.9, 0.9, 0.9], [4.0, 4.0, 4.0])
    run.manifests[0].parameters = {"mode": "observe"}
    assert busy_warnings(run) == []
