"""`lockprof run` as a real subprocess: the run directory, caching, Ctrl-C, a dying worker."""

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT, TINY, lockprof_cli, wait_for

from lockprof import store
from lockprof.analysis import load_run


def test_run_writes_a_complete_run_directory(tiny_run):
    manifest = store.read_manifest(tiny_run)
    assert manifest["status"] == "complete"
    assert manifest["scenario"]["name"] == "tiny"
    assert len(manifest["scenario"]["sha256"]) == 64
    assert manifest["parameters"]["concurrency"] == [1, 2]
    assert manifest["parameters"]["seed"] == 3
    engine = manifest["engines"][0]
    assert engine["clickhouse_version"].startswith("26.9")
    assert engine["package"] == "chdb-core 26.9.0"
    assert engine["has_query_log"] is True
    datasets = manifest["datasets"]["embedded"]
    assert datasets["namespace_day"]["active_parts"] == 20 * 15
    assert datasets["namespace_day"]["partition_key"] == "(namespace, toDate(ts))"
    assert "PARTITION BY" in datasets["day"]["create_table_query"]
    assert manifest["host"]["cpu_count"] == os.cpu_count()
    assert manifest["started_at"] and manifest["ended_at"]
    for table in ("queries", "levels", "events", "metrics", "query_events", "locks"):
        assert list((tiny_run / table).glob("*.parquet")), f"no {table} written"
    assert not [p for p in tiny_run.rglob(".*") if p.name != ".gitignore"], "temporary files left behind"


def test_every_measured_query_has_a_record_and_its_profile_events(tiny_run):
    run = load_run(tiny_run)
    levels = run.levels
    assert len(levels) == 4  # 2 schemas x 2 concurrency levels
    measured = run.measured()
    counts = measured.groupby(["schema", "concurrency"]).size()
    for _, level in levels.iterrows():
        assert counts[(level["schema"], level["concurrency"])] == level["queries"]
    assert measured["query_id"].str.startswith(run.manifest["run_id"]).all()
    # the query log matched every query: ids, rows and the parts lock events
    assert measured["engine_query_id"].notna().all()
    assert (measured["read_rows"] > 0).all()
    parts_events = run.query_events[run.query_events["event"] == "SharedPartsLocks"]
    assert set(parts_events["query_id"]) >= set(measured["query_id"])


def test_every_measured_query_has_its_own_thread_waits_within_its_other_time(tiny_run):
    """From query_thread_log: the waits for the query's own threads are part of what no counter covers
    (thread time - on CPU - CPU wait), and the pipeline ran inside the driver's call."""
    run = load_run(tiny_run)
    measured = run.measured().set_index("query_id")
    wide = run.query_events.pivot_table(index="query_id", columns="event", values="value", aggfunc="sum")
    wide = wide.reindex(measured.index)
    own, wall = wide["LockprofOwnThreadsWaitMicroseconds"], wide["LockprofPipelineWallMicroseconds"]
    assert own.notna().all() and wall.notna().all()
    other = (wide["RealTimeMicroseconds"] - wide["OSCPUVirtualTimeMicroseconds"]
             - wide["OSCPUWaitMicroseconds"].fillna(0))
    # The thread rows add up to the query's counters exactly, but a thread's CPU wait may exceed its real time
    # by up to a scheduler tick (about 4 ms at 250 Hz) and such a negative rest of one role is not waiting.
    assert (own >= 0).all() and (own <= other + 4000).all(), (own - other).max()
    assert (wall <= measured["latency_ms"] * 1000 + 1000).all()  # the driver's clock and the engine's: 1 ms
    assert (own > 0).mean() > 0.9  # the caller sleeps through nearly every pipeline


def test_summary_names_the_parts_lock_and_its_mode(tiny_run):
    result = lockprof_cli("summary", str(tiny_run), env={"COLUMNS": "200"})  # wide enough that no cell is cut
    assert result.returncode == 0, result.stderr
    out = result.stdout
    text = " ".join(out.split())  # rich wraps long lines
    assert "Where the time goes" in text and "Verdict" in text
    assert "namespace_day: the queries take the parts lock shared" in text


def test_second_run_reuses_the_cached_datasets(tiny_run, tmp_path):
    result = lockprof_cli("run", str(TINY), "--out", str(tmp_path / "again"), "--duration", "0.3",
                          "--warmup", "0", "--concurrency", "1")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("reused from cache") == 2
    datasets = store.read_manifest(tmp_path / "again")["datasets"]["embedded"]
    assert all(d["cached"] for d in datasets.values())


def test_a_run_keeps_its_datasets_and_no_others_in_its_data_path(tiny_run, tmp_path):
    """Every table of a data path is loaded at start and slows the queries, so a data path holds one dataset set."""
    both = store.read_manifest(tiny_run)["engines"][0]["data_path"]
    args = ["--schema", "day", "--duration", "0.3", "--warmup", "0", "--concurrency", "1"]
    first = lockprof_cli("run", str(TINY), "--out", str(tmp_path / "day"), *args)
    assert first.returncode == 0, first.stderr
    day = store.read_manifest(tmp_path / "day")
    assert day["engines"][0]["data_path"] != both  # not the path that holds namespace_day too
    # The scenario changed what fills the table: a new build, and the old one is dropped from the data path.
    edited = tmp_path / "tiny.py"
    edited.write_text(TINY.read_text().replace("number\nFROM numbers", "number + 1\nFROM numbers"))
    second = lockprof_cli("run", str(edited), "--out", str(tmp_path / "edited"), *args)
    assert second.returncode == 0, second.stderr
    again = store.read_manifest(tmp_path / "edited")
    assert again["engines"][0]["data_path"] == day["engines"][0]["data_path"]
    old, new = day["datasets"]["embedded"]["day"]["database"], again["datasets"]["embedded"]["day"]["database"]
    assert old != new and again["engines"][0]["stale_datasets_dropped"] == [old]


@pytest.mark.parametrize(
    "args, message, code",
    [
        (["--engine", "oracle"], "unknown engine 'oracle'", 3),
        (["--schema", "nope"], "has no schema 'nope'", 2),
        (["--samplers", "events,bogus"], "unknown samplers", 1),
    ],
)
def test_bad_options_get_one_clear_message(tmp_path, args, message, code):
    out = tmp_path / "r"
    result = lockprof_cli("run", str(TINY), "--out", str(out), *args)
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()


def _start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "lockprof", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, like a terminal's foreground job
    )


def _wait_for_levels(out: Path, count: int, timeout: float = 120) -> None:
    wait_for(lambda: len(list((out / "levels").glob("*.parquet"))) >= count, timeout, 0.1, f"{count} levels written")


class _Lines:
    """A pipe's lines, collected by a thread, so that a test can wait for one without blocking on the pipe."""

    def __init__(self, pipe) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=lambda: self.lines.extend(pipe), daemon=True)
        self._thread.start()

    def text(self) -> str:
        self._thread.join(timeout=60)
        return "".join(self.lines)


TRACED = """
import dataclasses, runpy
from pathlib import Path
from lockprof import Query

tiny = runpy.run_path({tiny!r})
base = tiny["scenario"]

def traced(rng):
    with open({trace!r}, "a") as trace:  # one byte per query the worker is about to send
        trace.write(".")
    return base.queries[0].params(rng)

scenario = dataclasses.replace(base, queries=[dataclasses.replace(base.queries[0], params=traced)])
"""


def test_ctrl_c_keeps_what_was_measured_and_marks_the_run_incomplete(tiny_run, tmp_path):
    trace = tmp_path / "trace"
    scenario = tmp_path / "tiny_traced.py"
    scenario.write_text(TRACED.format(tiny=str(TINY), trace=str(trace)))
    out = tmp_path / "interrupted"
    proc = _start(["run", str(scenario), "--out", str(out), "--duration", "3", "--warmup", "0"])
    stdout, stderr = _Lines(proc.stdout), _Lines(proc.stderr)
    # The first level is done once its line is printed; a query drawn after that is the second level's. Waiting
    # for both, not for a fixed time, puts the Ctrl-C inside the second level's 3 s however slow the machine is.
    wait_for(lambda: any(" queries, " in line for line in stderr.lines), 120, 0.05, "the first level's line")
    drawn = trace.stat().st_size
    wait_for(lambda: trace.stat().st_size > drawn, 120, 0.01, "a query of the second level")
    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=60)
    stdout, stderr = stdout.text(), stderr.text()
    assert proc.returncode == 130, stderr
    manifest = store.read_manifest(out)
    assert manifest["status"] == "incomplete"
    assert any("interrupted" in f for f in manifest["failures"])
    levels = store.read_table(out, "levels")
    assert len(levels) == 2 and levels["interrupted"].tolist() == [False, True]
    queries = store.read_table(out, "queries")
    assert len(queries) > 0 and queries["latency_ms"].notna().all()
    assert "incomplete" in stdout
    assert not [p for p in out.rglob(".*")], "temporary files left behind"


SLOW_BUILD = """
from lockprof import Query, Scenario, Schema
SLOW = "INSERT INTO {table} SELECT number FROM numbers(6) WHERE sleepEachRow(0.5) = 0"  # 3 s: one block's limit
scenario = Scenario(
    "slow_build",
    [Schema("s", "CREATE TABLE {table} (x UInt64) ENGINE = MergeTree ORDER BY x", populate=[SLOW, SLOW])],
    [Query("q", "SELECT count() FROM {table}")],
)
"""


def test_interrupt_while_building_a_dataset_leaves_nothing(tmp_path, lockprof_cache):
    scenario = tmp_path / "slow_build.py"
    scenario.write_text(SLOW_BUILD)
    out = tmp_path / "runs" / "early"
    proc = _start(["run", str(scenario), "--out", str(out)])
    # The table's metadata appears when the build creates it; its populate statements then take 6 s.
    # Interrupting then, not a fixed time after the start (on a loaded machine that may still be the
    # worker's start-up), is what the test is about.
    # (the worker's data path, of its dataset set, is under the cache or an instance slot's while this process
    # holds the engine)
    table = "embedded/*/datasets/*/metadata/lockprof_slow_build_s_*/data.sql"
    wait_for(lambda: [*lockprof_cache.glob(table), *lockprof_cache.glob(f"instances/*/{table}")], 120, 0.02,
             "the dataset's table to be created")
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "nothing was written" in stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "runs").exists() or list((tmp_path / "runs").iterdir()) == []


def _workers(pid: int) -> list[int]:
    """The engine worker processes among a process's children (py-spy runs beside them)."""
    children = [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return [c for c in children if b"lockprof.worker" in Path(f"/proc/{c}/cmdline").read_bytes()]


def test_a_dying_worker_is_reported_and_the_other_engine_is_kept(tiny_run, tmp_path):
    out = tmp_path / "crash"
    proc = _start(["run", str(TINY), "--out", str(out), "--engine", "embedded", "--engine", "embedded",
                   "--duration", "1", "--warmup", "0", "--concurrency", "1,2", "--repetitions", "1"])
    _wait_for_levels(out, 2)
    victim = _workers(proc.pid)[-1]
    os.kill(victim, signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, stderr
    manifest = store.read_manifest(out)
    assert manifest["status"] == "incomplete"
    assert len(manifest["failures"]) == 1 and "SIGKILL" in manifest["failures"][0]
    assert "died" in stdout + stderr
    levels = store.read_table(out, "levels")
    survivors = levels.groupby("engine").size()
    assert survivors.max() == 4  # the surviving engine ran every level
    assert isinstance(levels, pd.DataFrame)
    assert json.loads((out / "manifest.json").read_text())["ended_at"]


def test_engine_self_check_finds_the_pinned_engine_parallel(tiny_run):
    from lockprof.selfcheck import WAIT_S

    check = store.read_manifest(tiny_run)["engines"][0]["self_check"]
    # two waiting queries overlap on chDB 26.9 however busy the machine: a pair takes about one wait
    assert check["verdict"] == "parallel", check
    assert check["wait_pair_s"] < 1.5 * WAIT_S and check["speedup"] >= 1.5
    assert check["qps_1"] > 0 and check["cpu_speedup"] > 0 and check["control_speedup"] > 0  # context only


def test_self_check_flags_an_engine_that_serializes(engine):
    """A lock around every query makes the real engine behave like a serializing chDB release."""
    import threading

    from lockprof.clock import RunClock
    from lockprof.selfcheck import WAIT_S, self_check

    gate = threading.Lock()

    class Serialized:
        def __init__(self, conn):
            self.conn = conn

        def execute(self, sql, params=None, query_id=None, **kwargs):
            with gate:
                self.conn.execute(sql, params, query_id=query_id, **kwargs)

    conns = [Serialized(engine.connect()), Serialized(engine.connect())]
    check = self_check(conns, RunClock(), seconds=0.4)
    # a serialized pair can never take less than two waits, whatever the load: no "inconclusive" escape
    assert check["verdict"] == "serialized", check
    assert check["wait_pair_s"] >= 2 * WAIT_S and check["speedup"] < 1.2


def test_overhead_control_interleaves_the_same_level_without_samplers(tmp_path):
    out = tmp_path / "overhead"
    result = lockprof_cli("run", str(TINY), "--out", str(out), "--schema", "day", "--concurrency", "1",
                          "--duration", "0.5", "--warmup", "0", "--repetitions", "8", "--overhead-control")
    assert result.returncode == 0, result.stderr
    run = load_run(out)
    order = run.levels.sort_values("seq")["engine"].tolist()
    plain, twin = "embedded", "embedded+no-samplers"
    assert order == [plain, twin, twin, plain] * 4  # the twin runs first in odd repetitions
    # the control levels ran with no sampler at all
    for table in (run.events, run.metrics, run.driver):
        assert set(table["engine"]) == {"embedded"}
    assert set(run.query_events["query_id"]).isdisjoint(
        run.queries[run.queries["engine"] == "embedded+no-samplers"]["query_id"])
    labels = [e["label"] for e in run.manifest["engines"]]
    assert labels == ["embedded", "embedded+no-samplers"]
    # and compare puts a throughput difference with an interval on it
    from lockprof.analysis.ab import compare

    verdicts = compare(run).frame
    throughput = verdicts[verdicts["metric"] == "throughput_qps"]
    assert len(throughput) == 1
    assert throughput[["ratio", "ci_low", "ci_high"]].notna().all(axis=None)


def test_a_run_without_samplers_still_summarizes(tmp_path):
    out = tmp_path / "bare"
    result = lockprof_cli("run", str(TINY), "--out", str(out), "--schema", "day", "--concurrency", "1",
                          "--duration", "0.3", "--warmup", "0", "--samplers", "off")
    assert result.returncode == 0, result.stderr
    assert "No lock events were recorded" in result.stdout
    run = load_run(out)
    assert run.events.empty and run.query_events.empty and len(run.measured()) > 0
