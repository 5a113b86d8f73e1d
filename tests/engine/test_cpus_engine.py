"""--cpus on the real engine: every thread of the engine worker held to the chosen cores, and a sweep over core
counts as engines of their own, recorded in the manifest."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, TINY, lockprof_cli, wait_for

from lockprof import cpus, store
from lockprof.analysis import load_run

ALLOWED = sorted(os.sched_getaffinity(0))
TWO_CORES = pytest.mark.skipif(len(ALLOWED) < 2, reason="pinning is only visible with two or more allowed cores")
SHORT = ("--schema", "day", "--warmup", "0.2", "--samplers", "off")


def worker_of(run_pid: int) -> int | None:
    """The engine worker a `lockprof run` process started (its child running lockprof.worker), if it exists yet."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == run_pid and b"lockprof.worker" in (entry / "cmdline").read_bytes():
                return int(entry.name)
        except (OSError, IndexError, ValueError):
            continue
    return None


def engine_threads(pid: int) -> dict[str, list[int]] | None:
    """Each thread of the worker (name and tid) -> the CPUs it may run on, once the engine's own threads exist."""
    threads: dict[str, list[int]] = {}
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            name = (task / "comm").read_text().strip()
            threads[f"{name}/{task.name}"] = cpus.task_cpus(task / "status")
    except OSError:
        return None
    engine = [t for t in threads if t.split("/")[0] in ("BgSchPool", "MergeMutate", "ThreadPool", "QueryPipelineEx")]
    return threads if len(engine) >= 3 else None


@TWO_CORES
def test_every_thread_of_the_engine_worker_is_held_to_the_one_chosen_core(tmp_path):
    out = tmp_path / "one"
    proc = subprocess.Popen([sys.executable, "-m", "lockprof", "run", str(TINY), "--cpus", "1", "--concurrency", "2",
                             "--duration", "2", *SHORT, "--out", str(out)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        worker = wait_for(lambda: worker_of(proc.pid), timeout=300, what="the engine worker")
        # seen while the engine runs: chDB has started its pools (and the level's query threads, if it is in one)
        threads = wait_for(lambda: engine_threads(worker), timeout=300, what="the engine's threads")
    finally:
        stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:] + stdout[-2000:]
    wrong = {name: allowed for name, allowed in threads.items() if allowed != [ALLOWED[0]]}
    assert not wrong, f"threads not held to CPU {ALLOWED[0]}: {wrong}"
    (engine,) = store.read_manifest(out)["engines"]
    assert engine["label"] == "embedded"  # one count: the engine keeps its own label
    assert engine["cpus"] == 1 and engine["pinned_cpu_ids"] == [ALLOWED[0]]
    assert engine["cpu_ids"] == [ALLOWED[0]]  # as the worker found itself, all its threads


@TWO_CORES
def test_a_sweep_over_core_counts_runs_each_count_as_an_engine_of_its_own(tmp_path):
    out = tmp_path / "sweep"
    result = lockprof_cli("run", str(TINY), "--cpus", "1,2", "--concurrency", "1", "--duration", "0.5",
                          "--repetitions", "1", *SHORT, "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    engines = {e["label"]: e for e in store.read_manifest(out)["engines"]}
    assert set(engines) == {"embedded@1cpu", "embedded@2cpu"}
    assert engines["embedded@1cpu"]["cpus"] == 1 and engines["embedded@1cpu"]["cpu_ids"] == ALLOWED[:1]
    assert engines["embedded@2cpu"]["cpus"] == 2 and engines["embedded@2cpu"]["cpu_ids"] == ALLOWED[:2]
    assert sorted(load_run(out).levels["engine"]) == ["embedded@1cpu", "embedded@2cpu"]
    assert "embedded@1cpu" in result.stdout and "embedded@2cpu" in result.stdout


def test_an_unpinned_run_records_no_core_count(tiny_run):
    for engine in store.read_manifest(tiny_run)["engines"]:
        assert engine.get("cpus") is None
        assert engine["cpu_ids"] == ALLOWED


@TWO_CORES
def test_a_launched_server_runs_on_the_cores_of_its_worker(tmp_path):
    """--engine server:26.9: the server is the worker's child and inherits its cores; the manifest's cpu_ids are
    what the server process's threads may run on."""
    from launched import VERSION, server_python

    server_python()  # the 26.9 environment, built from this environment's chDB (nothing downloaded)
    out = tmp_path / "server"
    result = lockprof_cli("run", str(TINY), "--engine", f"server:{VERSION}", "--cpus", "1", "--concurrency", "1",
                          "--duration", "0.5", *SHORT, "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    (engine,) = store.read_manifest(out)["engines"]
    assert engine["kind"] == "server" and engine["cpus"] == 1
    assert engine["cpu_ids"] == ALLOWED[:1]
