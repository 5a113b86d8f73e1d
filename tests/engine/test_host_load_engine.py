"""How busy the machine was during each level: the host-load columns of real runs."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from conftest import TINY, lockprof_cli, wait_for

from lockprof.analysis import level_summary, load_run
from lockprof.analysis.health import run_warnings
from lockprof.analysis.host import BUSY_OTHER_SHARE
from lockprof.samplers.host import COLUMNS

TICK = os.sysconf("SC_CLK_TCK")


# --- real runs ---------------------------------------------------------------------------------------------------
def test_every_level_records_the_host_load(tiny_run):
    levels = load_run(tiny_run).levels
    assert set(COLUMNS) <= set(levels)
    cpus = sum(1 for line in Path("/proc/stat").read_text().splitlines() if line[:3] == "cpu" and line[3:4].isdigit())
    assert (levels["host_cpus"] == cpus).all()
    for column in COLUMNS[1:]:
        assert np.isfinite(levels[column].astype(float)).all(), column
    assert (levels[["load_avg_start", "load_avg_end"]] >= 0).all().all()
    assert (levels["run_cpu_share"] > 0).all()  # the engine ran queries for the whole window
    assert (levels["host_other_cpu_share"] >= 0).all()
    # Together at most the whole machine (with room for the kernel's tick accounting).
    assert (levels["run_cpu_share"] + levels["host_other_cpu_share"] <= 1.05).all()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def test_cpu_burners_beside_a_run_count_as_other_processes(tiny_run, tmp_path):
    """Two processes that burn CPU beside the run, and outside it: the levels count their CPU time as the other
    processes', not the run's. Other people's work on the machine can only add to that share, so the check is
    against what the burners themselves used in each window, never against an idle figure."""
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    seen: list[tuple[float, float]] = []  # (unix time, the burners' CPU seconds)
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.append((time.time(), sum(cpu_seconds(b.pid) for b in burners)))
            stop.wait(0.05)

    try:
        wait_for(lambda: all(cpu_seconds(b.pid) > 0 for b in burners), what="the burners to run")
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        out = tmp_path / "busy"
        result = lockprof_cli("run", str(TINY), "--out", str(out), "--schema", "day", "--concurrency", "1,2",
                              "--warmup", "0.2", "--duration", "2")
        stop.set()
        watcher.join()
    finally:
        for b in burners:
            b.kill()
            b.wait()
    assert result.returncode == 0, result.stderr + result.stdout
    run = load_run(out)
    origin = run.manifest["clock"]["origin_unix_s"]
    t, used = np.array(seen).T
    for _, lv in run.levels.iterrows():
        start, end = origin + lv["measure_start_s"], origin + lv["measure_end_s"]
        assert t[0] <= start and end <= t[-1]
        burned = float(np.diff(np.interp([start, end], t, used))[0]) / ((end - start) * lv["host_cpus"])
        assert burned > 0.05, f"the burners barely ran ({burned:.0%} of the machine)"
        assert lv["host_other_cpu_share"] >= 0.8 * burned - 0.03, (lv["host_other_cpu_share"], burned)
        assert lv["run_cpu_share"] + burned <= 1.05, (lv["run_cpu_share"], burned)  # not counted as the run's
    busy = (run.levels["host_other_cpu_share"] > BUSY_OTHER_SHARE).any()
    assert any("machine was busy" in w for w in run_warnings(run, level_summary(run))) == busy
